//! The resources as the api shows them, in one place, so that a webhook message carries a post,
//! an account, a key or a media item in exactly the shape `GET /v1/...` returns it. Each module
//! holds the view type (with its OpenAPI schema) and the query that loads it; reach (which key
//! may see what) stays with the caller.

pub mod accounts;
pub mod keys;
pub mod media;
pub mod posts;
