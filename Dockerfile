# Used by docker-compose.yml (not runnable on this project's machines: no Docker engine there).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p chat-system --bin chat-system

FROM debian:bookworm-slim
COPY --from=build /src/target/release/chat-system /usr/local/bin/chat-system
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
CMD ["chat-system", "serve"]
