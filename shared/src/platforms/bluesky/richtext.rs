//! Bluesky's rich text: a post's links, mentions and hashtags are not found by the app in its
//! text but given with it as facets (`app.bsky.richtext.facet`), each a range of the text in
//! UTF-8 bytes (`index.byteStart`, `index.byteEnd`, end exclusive) and what it is: `#link`
//! (`uri`), `#mention` (`did`: the handle resolved first) or `#tag` (`tag`, without the `#`).
//! This finds them the way the Bluesky app's own detection reads text: a link is an `http(s)://`
//! word, a mention an `@` and a handle (a domain name) and a tag a `#` and a word, each at the
//! start of the text or after a space or an opening bracket, without trailing punctuation.

use unicode_segmentation::UnicodeSegmentation;

/// The longest tag the lexicon takes, in graphemes (`maxGraphemes: 64`).
const MAX_TAG_GRAPHEMES: usize = 64;

/// One stretch of text that is a link, a mention or a tag, in UTF-8 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: SpanKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanKind {
    Link(String),
    /// The handle, without the `@`.
    Mention(String),
    /// The tag, without the `#`.
    Tag(String),
}

/// Characters a link, handle or tag never ends with (they end the sentence around it).
fn is_trailing_punctuation(character: char) -> bool {
    matches!(character, '.' | ',' | ';' | ':' | '!' | '?' | ')' | ']' | '}' | '"' | '\'' | '…')
}

/// The links, mentions and tags in `text`, in order.
pub fn spans(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut words = Vec::new();
    // Words: runs of non-space characters, split after an opening bracket too.
    let mut start = None;
    for (index, character) in text.char_indices() {
        let splits = character.is_whitespace() || matches!(character, '(' | '[' | '{');
        match (start, splits) {
            (Some(from), true) => {
                words.push((from, index));
                start = None;
            }
            (None, false) => start = Some(index),
            _ => {}
        }
    }
    if let Some(from) = start {
        words.push((from, text.len()));
    }
    for (from, to) in words {
        let word = text[from..to].trim_end_matches(is_trailing_punctuation);
        let end = from + word.len();
        if word.starts_with("https://") || word.starts_with("http://") {
            if url::Url::parse(word).is_ok_and(|url| url.host_str().is_some()) {
                spans.push(Span { start: from, end, kind: SpanKind::Link(word.to_owned()) });
            }
        } else if let Some(handle) = word.strip_prefix('@') {
            if is_handle(handle) {
                spans.push(Span { start: from, end, kind: SpanKind::Mention(handle.to_owned()) });
            }
        } else if let Some(tag) = word.strip_prefix('#') {
            let count = tag.graphemes(true).count();
            // `#1` is a number, not a tag; `##` or `#` alone is nothing.
            if (1..=MAX_TAG_GRAPHEMES).contains(&count)
                && !tag.chars().all(|character| character.is_ascii_digit())
                && !tag.starts_with('#')
            {
                spans.push(Span { start: from, end, kind: SpanKind::Tag(tag.to_owned()) });
            }
        }
    }
    spans
}

/// Whether `handle` reads as an atproto handle: a domain name of at least two labels, each of
/// ASCII letters, digits and hyphens, not starting or ending with a hyphen, the last not starting
/// with a digit.
pub fn is_handle(handle: &str) -> bool {
    let labels: Vec<&str> = handle.split('.').collect();
    handle.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels.last().is_some_and(|last| last.bytes().next().is_some_and(|byte| byte.is_ascii_alphabetic()))
}

/// The facet of `span`, with the DID its mention resolved to (`None`: the handle did not
/// resolve, and a mention gets no facet).
pub fn facet(span: &Span, did: Option<&str>) -> Option<serde_json::Value> {
    let feature = match &span.kind {
        SpanKind::Link(uri) => serde_json::json!({ "$type": "app.bsky.richtext.facet#link", "uri": uri }),
        SpanKind::Mention(_) => serde_json::json!({ "$type": "app.bsky.richtext.facet#mention", "did": did? }),
        SpanKind::Tag(tag) => serde_json::json!({ "$type": "app.bsky.richtext.facet#tag", "tag": tag }),
    };
    Some(serde_json::json!({
        "index": { "byteStart": span.start, "byteEnd": span.end },
        "features": [feature],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&str, SpanKind)> {
        spans(text).into_iter().map(|span| (&text[span.start..span.end], span.kind)).collect()
    }

    #[test]
    fn offsets_are_utf8_bytes_not_characters() {
        let text = "Café 🎉 ça marche: https://example.com/a?b=1. Merci @ada.bsky.social! #Rust";
        let spans = spans(text);
        // "Café 🎉 ça marche: " is 18 characters and 23 bytes.
        assert_eq!((spans[0].start, spans[0].end), (23, 48));
        assert_eq!(spans[0].kind, SpanKind::Link("https://example.com/a?b=1".into()));
        assert_eq!(&text[56..72], "@ada.bsky.social");
        assert_eq!((spans[1].start, spans[1].end, &spans[1].kind), (56, 72, &SpanKind::Mention("ada.bsky.social".into())));
        assert_eq!((spans[2].start, spans[2].end, &spans[2].kind), (74, 79, &SpanKind::Tag("Rust".into())));
    }

    #[test]
    fn only_words_are_links_mentions_and_tags() {
        assert_eq!(
            found("(see https://a.example) mail@x.com @nohandle #1 #été #ok. ##no"),
            [
                ("https://a.example", SpanKind::Link("https://a.example".into())),
                ("#été", SpanKind::Tag("été".into())),
                ("#ok", SpanKind::Tag("ok".into())),
            ]
        );
        assert!(found("https:// http://").is_empty());
        assert!(is_handle("a.bsky.social") && !is_handle("a.123") && !is_handle("-a.com") && !is_handle("a"));
    }

    #[test]
    fn a_mention_that_did_not_resolve_has_no_facet() {
        let span = Span { start: 0, end: 4, kind: SpanKind::Mention("a.bc".into()) };
        assert_eq!(facet(&span, None), None);
        let facet = facet(&span, Some("did:plc:abc")).unwrap();
        assert_eq!(facet["features"][0]["did"], "did:plc:abc");
        assert_eq!(facet["index"], serde_json::json!({"byteStart": 0, "byteEnd": 4}));
    }
}
