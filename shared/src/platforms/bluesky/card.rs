//! A post's link card (`app.bsky.embed.external`): Bluesky shows none unless the post embeds
//! one, so herald makes it, as the Bluesky app does, from the page the first link names: its
//! Open Graph `og:title`, `og:description` and `og:image` (else `<title>` and the
//! `description` meta). The page and its image are user-supplied URLs: they are fetched only
//! through the guarded outbound client ([`crate::outbound`]), with a size cap each, under the
//! client's timeout. Any failure leaves the post without a card (or the card without an image);
//! it never fails the post.

use bytes::Bytes;
use futures::StreamExt;

use crate::outbound::{self, OutboundClient, OutboundError};

/// The most of a page herald reads for its card: the head, where the meta tags are, is well
/// within it; a page cut short there still gives what it had.
pub const PAGE_BYTES: u64 = 512 * 1024;
/// The largest card image: the lexicon's `thumb` takes up to 1,000,000 bytes.
pub const THUMB_BYTES: u64 = 1_000_000;
/// The image types the lexicon's `thumb` takes.
const THUMB_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];
/// The longest title and description herald puts on a card, in characters.
const MAX_TITLE_CHARS: usize = 300;
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// What a page says of itself, for its card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageFacts {
    pub title: Option<String>,
    pub description: Option<String>,
    /// The image's URL, resolved against the page's.
    pub image: Option<url::Url>,
}

/// The card image: its bytes and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumb {
    pub content_type: String,
    pub bytes: Bytes,
}

/// Reads the page at `url` for its card; `Err` when there is nothing to make one of.
pub async fn page_facts(client: &OutboundClient, url: &str) -> Result<PageFacts, OutboundError> {
    let url = outbound::parse_url(url, client.allows_private())?;
    let response = client.get(&url).await?;
    if !response.status().is_success() {
        return Err(OutboundError::Network(format!("the page answered {}", response.status())));
    }
    let is_html = content_type(&response).is_none_or(|kind| kind == "text/html" || kind == "application/xhtml+xml");
    if !is_html {
        return Err(OutboundError::Network("the page is not HTML".to_owned()));
    }
    let page = read_up_to(response, PAGE_BYTES, true).await?;
    let facts = parse(&String::from_utf8_lossy(&page), &url);
    if facts.title.is_none() && facts.description.is_none() {
        return Err(OutboundError::Network("the page names no title".to_owned()));
    }
    Ok(facts)
}

/// Fetches the card image at `url`: an image of a type and size the lexicon takes.
pub async fn thumb(client: &OutboundClient, url: &url::Url) -> Result<Thumb, OutboundError> {
    let response = client.get(url).await?;
    if !response.status().is_success() {
        return Err(OutboundError::Network(format!("the image answered {}", response.status())));
    }
    let Some(content_type) = content_type(&response).filter(|kind| THUMB_TYPES.contains(&kind.as_str())) else {
        return Err(OutboundError::Network("the image is of a type Bluesky does not take".to_owned()));
    };
    let bytes = read_up_to(response, THUMB_BYTES, false).await?;
    Ok(Thumb { content_type, bytes })
}

/// The answer's media type, lowercase, without parameters.
fn content_type(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(reqwest::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// The body of `response`, at most `limit` bytes: past it, what came so far when `keep_head`,
/// else [`OutboundError::TooLarge`].
async fn read_up_to(response: reqwest::Response, limit: u64, keep_head: bool) -> Result<Bytes, OutboundError> {
    let mut body = outbound::body_stream(response, limit);
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(OutboundError::TooLarge { .. }) if keep_head && !bytes.is_empty() => break,
            Err(error) => return Err(error),
        }
    }
    Ok(Bytes::from(bytes))
}

/// What the meta tags and title of `html` (a page at `base`) say.
pub fn parse(html: &str, base: &url::Url) -> PageFacts {
    let mut og_title = None;
    let mut og_description = None;
    let mut description = None;
    let mut og_image = None;
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(found) = lower[at..].find("<meta") {
        let start = at + found;
        let Some(length) = lower[start..].find('>') else { break };
        let tag = &html[start..start + length];
        at = start + length;
        let key = attribute(tag, "property").or_else(|| attribute(tag, "name")).map(|key| key.to_ascii_lowercase());
        let Some(content) = attribute(tag, "content") else { continue };
        match key.as_deref() {
            Some("og:title") => og_title = og_title.or(Some(content)),
            Some("og:description") => og_description = og_description.or(Some(content)),
            Some("description") => description = description.or(Some(content)),
            Some("og:image" | "og:image:url" | "og:image:secure_url") => og_image = og_image.or(Some(content)),
            _ => {}
        }
    }
    let title = og_title.or_else(|| {
        let start = lower.find("<title")?;
        let open = start + lower[start..].find('>')? + 1;
        let close = open + lower[open..].find("</title")?;
        Some(unescape(&html[open..close]))
    });
    PageFacts {
        title: cleaned(title, MAX_TITLE_CHARS),
        description: cleaned(og_description.or(description), MAX_DESCRIPTION_CHARS),
        image: og_image.and_then(|image| base.join(image.trim()).ok()).filter(|url| matches!(url.scheme(), "http" | "https")),
    }
}

/// `text` with its whitespace collapsed, cut to `limit` characters; `None` when empty.
fn cleaned(text: Option<String>, limit: usize) -> Option<String> {
    let text = text?.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then(|| text.chars().take(limit).collect())
}

/// The value of attribute `name` in the tag `tag` (quoted with `"` or `'`, or bare), unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut at = 0;
    while let Some(found) = lower[at..].find(name) {
        let start = at + found;
        at = start + name.len();
        // The name must stand alone: after a space, and followed by `=`.
        let before = lower[..start].chars().next_back();
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let rest = tag[at..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else { continue };
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => rest[1..].split(quote).next().unwrap_or_default(),
            _ => rest.split(|character: char| character.is_whitespace() || character == '/').next().unwrap_or_default(),
        };
        return Some(unescape(value));
    }
    None
}

/// `text` with HTML's common character references replaced.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_graph_comes_first_then_the_title_and_description() {
        let base = url::Url::parse("https://example.com/posts/1").unwrap();
        let html = r#"<html><head><title>Plain title</title>
            <meta name="description" content="Plain &amp; simple">
            <META property='og:title' content="Caf&eacute; &quot;news&quot;" />
            <meta content="/img/card.png" property="og:image">
            </head><body></body></html>"#;
        let facts = parse(html, &base);
        assert_eq!(facts.title.as_deref(), Some("Caf&eacute; \"news\""));
        assert_eq!(facts.description.as_deref(), Some("Plain & simple"));
        assert_eq!(facts.image.as_ref().map(url::Url::as_str), Some("https://example.com/img/card.png"));
        let bare = parse("<title>\n  Only   a title </title>", &base);
        assert_eq!(bare, PageFacts { title: Some("Only a title".into()), description: None, image: None });
        let scripted = parse(r#"<meta property="og:image" content="javascript:alert(1)">"#, &base);
        assert_eq!(scripted.image, None);
    }
}
