//! Small HTML pages for people in a browser: the OAuth callback's result and the sandbox's
//! consent page. Everything interpolated is escaped.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// A page with a title and one paragraph.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    page_html(status, title, &format!("<p>{}</p>", escape(message)))
}

/// A page with a title and `body`, which the caller has escaped.
pub fn page_html(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family: sans-serif; max-width: 32rem; margin: 3rem auto\"><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    (status, Html(html)).into_response()
}

/// HTML-escapes text put into a page.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
