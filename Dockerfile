# syntax=docker/dockerfile:1

# ---- build ------------------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when go.mod/go.sum change, so
# source edits reuse the downloaded module cache.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# The build cache mount (BuildKit) only speeds up rebuilds; the build is
# correct without it.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/offload ./cmd/server

# ---- runtime ----------------------------------------------------------------
# Static, shell-less image; runs as the distroless "nonroot" user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/offload /offload
USER 65532:65532
ENV ADDR=:8080
EXPOSE 8080

# distroless has no shell or curl, so the probe is the binary itself:
# `offload -healthcheck` GETs http://127.0.0.1$ADDR/healthz and exits 0 when it
# answers 200, 1 otherwise (flag implemented in cmd/server). Orchestrators that
# ignore Docker HEALTHCHECK (e.g. Kubernetes) should probe /healthz (liveness)
# and /readyz (readiness) over HTTP instead.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/offload", "-healthcheck"]

ENTRYPOINT ["/offload"]
