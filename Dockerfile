# syntax=docker/dockerfile:1
# mlflow-irsa-webhook image: the webhook server and its hook commands (bootstrap-cert, restart-target, install-trigger).
# Stage build compiles with dev dependencies, stage prod-deps installs production dependencies only; the runtime stage
# copies just dist/ (no source maps), those node_modules, package.json and LICENSE. test/image.test.ts lists the result.

# Node 24 (LTS, supported to April 2028) on Debian bookworm, slim, pinned by the digest of its multi-arch index
# (linux/amd64 and linux/arm64). The digest was taken from public Dockerfiles that pin this same tag, not read from
# Docker Hub here. To refresh: `docker buildx imagetools inspect node:24-bookworm-slim`, then put the version it runs
# (the Node patch release) and its index "Digest:" on this line together. scripts/fetch-node.sh reads the version from
# this line, so CI runs the test suite on the same Node as the image.
ARG NODE_IMAGE=node:24.21.0-bookworm-slim@sha256:2fe369e969550cde8e867afc3fe370b260140cab4a23d467074295b42163d553

# The two install stages run on the builder's own platform: their output is plain JavaScript (no native modules), so a
# multi-arch build does not run npm and tsc under emulation.
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build -- --sourceMap false

FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# keep in step with package.json's version (a test checks); docs: README "Build and push the image"
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mlflow-irsa-webhook" \
      org.opencontainers.image.description="Mutating admission webhook and tracking-database trigger that move Domino's MLflow artifacts to S3 with IRSA" \
      org.opencontainers.image.source="https://github.com/mlflow-irsa-webhook/mlflow-irsa-webhook" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
WORKDIR /app
ENV NODE_ENV=production
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json LICENSE ./
# numeric, so Kubernetes runAsNonRoot can verify it without a passwd entry; the chart runs the pods as the same 65532
USER 65532:65532
EXPOSE 8443
# Node sizes V8's heap from the container's memory limit: under 1 GiB (the chart's is 256Mi) the young generation gets
# 1 MiB semi-spaces, and short-lived request objects are promoted and collected by full GCs: ~1.6x the CPU per Deployment
# admission under load. 4 MiB ones cost ~5 MiB of RSS at rest and bring it back to the unconstrained figure
# (bench/RESULTS.md, "Memory in a pod").
ENTRYPOINT ["node", "--max-semi-space-size=4", "dist/cli.js"]
CMD ["serve", "--config", "/etc/mlflow-irsa-webhook/config.yaml", "--tls-cert", "/etc/mlflow-irsa-webhook-tls/tls.crt", "--tls-key", "/etc/mlflow-irsa-webhook-tls/tls.key"]
