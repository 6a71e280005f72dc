"""HTTP edge: routers, request/response models, auth and error mapping. No business logic."""
