# mlflow-irsa-webhook image: the webhook server and its hook commands (bootstrap-cert, restart-target, install-trigger).
# Stage 1 builds with dev dependencies; stage 2 installs production dependencies only; the runtime copies just those.

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:20-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# numeric, so Kubernetes runAsNonRoot can verify it without a passwd entry; the chart runs the pods as the same 65532
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "--config", "/etc/mlflow-irsa-webhook/config.yaml", "--tls-cert", "/etc/mlflow-irsa-webhook-tls/tls.crt", "--tls-key", "/etc/mlflow-irsa-webhook-tls/tls.key"]
