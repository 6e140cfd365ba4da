"""gradserve's service: HTTP/JSON and gRPC frontends over one engine process."""
