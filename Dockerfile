# syntax=docker/dockerfile:1
# fleetgate container image: the broker (`npm start` = node dist/broker/main.js).
#   docker build -t fleetgate .
#   docker run --rm -p 1883:1883 -p 8080:8080 -e DATABASE_URL=postgres://… -e ADMIN_TOKEN=… fleetgate
# Without DATABASE_URL the broker runs its embedded PostgreSQL under
# DATA_DIR=/data (mount a volume there to keep it); in Kubernetes use a real
# server (the Helm chart requires DATABASE_URL from a Secret).
ARG NODE_IMAGE=node:22-bookworm-slim

# ---- build: all dependencies, TypeScript → dist/ ---------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# (the npm cache lives in a BuildKit cache mount, not in a layer)
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY broker ./broker
COPY devices ./devices
COPY simulator ./simulator
RUN npm run build

# ---- runtime: production dependencies only, non-root, tini as PID 1 --------
FROM ${NODE_IMAGE} AS runtime
# tini forwards SIGTERM to node and reaps zombies (node as PID 1 would get no
# default signal handling); the broker's ordered shutdown starts on SIGTERM.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    DATA_DIR=/data \
    MQTT_PORT=1883 \
    HTTP_PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
# Applied at start-up (and by `node dist/broker/migrate-cli.js`), read from
# /app/migrations next to dist/.
COPY migrations ./migrations
# The image's `node` user (uid 1000); numeric so Kubernetes can verify
# runAsNonRoot. Everything under /app stays root-owned and read-only to it.
RUN mkdir -p /data && chown 1000:1000 /data
USER 1000:1000
EXPOSE 1883 8883 8080
# slim has no curl; node's fetch does the check. HTTP_PORT may be overridden.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.HTTP_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/broker/main.js"]
