# syntax=docker/dockerfile:1
# One image for every role (ingress, worker, start, mock-upstream, check-config): the role is the CMD.
# Build: docker build -t spillway:local .      Run: docker run --rm -p 8080:8080 spillway:local

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: dev dependencies, tsc, then drop dev dependencies -------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first so the npm ci layer is reused until dependencies change.
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/ scripts/
COPY bin/ bin/
COPY src/ src/
COPY workers/ workers/
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: compiled JS, production node_modules, no compiler, no sources ----------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Files stay root-owned: the `node` user can read the app but not rewrite it.
# package.json is needed at run time: its "type": "module" makes dist/*.js ESM.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules/ node_modules/
COPY --from=build /app/dist/ dist/
COPY --from=build /app/bin/ bin/
# Uploaded files (files.dir): the one directory the `node` user writes; a compose volume mounted here keeps this owner.
RUN mkdir -p /var/lib/spillway/files && chown node:node /var/lib/spillway/files
# uid 1000; Kubernetes manifests repeat it as runAsUser because runAsNonRoot cannot verify a user name.
USER node
EXPOSE 8080
# Slim images have no curl. HEALTHCHECK_URL lets roles that serve /health elsewhere (worker: 9091) reuse it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.HEALTHCHECK_URL || 'http://127.0.0.1:' + (process.env.PORT || 8080) + '/health', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node is PID 1 and gets SIGTERM directly: no shell in between to swallow it.
ENTRYPOINT ["node", "bin/spillway.js"]
CMD ["start"]
