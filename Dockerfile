# syntax=docker/dockerfile:1
# fleetgate container image: the broker (`npm start` = node dist/broker/main.js).
#   docker build -t fleetgate .
#   docker run --rm -p 1883:1883 -p 8080:8080 -e DATABASE_URL=postgres://… -e ADMIN_TOKEN=… fleetgate
# The image needs DATABASE_URL: it leaves out the optional embedded
# PostgreSQL (the laptop default of `npm start`), and without DATABASE_URL the
# broker stops at start-up saying so. The Helm chart takes it from a Secret.
ARG NODE_IMAGE=node:22-bookworm-slim

# ---- build: all dependencies, TypeScript → dist/ ---------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci applies patches/ to aedes (package.json "postinstall": patch-package).
COPY patches ./patches
# (the npm cache lives in a BuildKit cache mount, not in a layer)
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY broker ./broker
COPY devices ./devices
COPY console ./console
COPY simulator ./simulator
COPY scripts ./scripts
ARG REVISION=unknown
RUN REVISION=${REVISION} npm run build

# ---- runtime: production dependencies only, non-root, tini as PID 1 --------
FROM ${NODE_IMAGE} AS runtime
# Build metadata (docker build --build-arg VERSION=… --build-arg REVISION=$(git rev-parse HEAD)).
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="fleetgate" \
      org.opencontainers.image.description="IoT device connection broker: MQTT in, PostgreSQL out, acknowledged after commit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="UNLICENSED" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
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
# The production install patches aedes too (patch-package is a dependency).
COPY patches ./patches
# No optional dependencies: embedded-postgres (~60 MB of PostgreSQL binaries)
# serves only the laptop default; in an image DATABASE_URL is required.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --omit=optional --no-audit --no-fund
COPY --from=build /app/dist ./dist
# Applied at start-up (and by `node dist/broker/cli/migrate-cli.js`), read from
# /app/migrations next to dist/.
COPY migrations ./migrations
# The web console's client (ES modules served as they are; its vendor modules
# come from node_modules).
COPY console/app ./console/app
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
