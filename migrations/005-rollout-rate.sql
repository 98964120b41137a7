-- A rollout's rate holds for the whole cluster (issue 6): replicas take
-- their step budget from one token bucket kept on the rollout's row.
-- rate_paid_until: the virtual time up to which pushes have been granted;
-- the tokens available now are (now() - it) × rate, at most one second's worth.
ALTER TABLE rollouts ADD COLUMN rate_paid_until timestamptz;
