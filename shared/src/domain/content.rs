//! What a platform accepts as a post's content, as a plain value: the post validation (a use
//! case) checks a post against it without knowing the platforms, which fill it in from their
//! specs (`platforms::PlatformSpec::content`).
//!
//! Each platform counts a text its own way ([`TextCount`]), and herald counts as it does, so a
//! post refused by the platform is refused at creation instead:
//! - X: the weighted length of twitter-text v3 — most Latin, Greek, Cyrillic and punctuation
//!   code points weigh 1, every other code point (CJK, for one) 2, an emoji (a whole sequence)
//!   2, and every URL 23 (t.co), against 280;
//! - Bluesky: graphemes (`app.bsky.feed.post` `text`: 300 graphemes);
//! - Mastodon: graphemes, with every URL counting 23 and a remote mention only its local part
//!   (`@ada@example.social` counts as `@ada`), as its `StatusLengthValidator` does;
//! - the others: Unicode characters (code points).

use unicode_segmentation::UnicodeSegmentation;

use super::media_rules::MediaRules;

/// How a platform counts a post's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCount {
    /// Unicode code points.
    Characters,
    /// Extended grapheme clusters (what a person sees as one character).
    Graphemes,
    /// twitter-text v3's weighted length.
    XWeighted,
    /// Graphemes, URLs as 23, remote mentions as their local part.
    Mastodon,
}

/// A platform's limits on a post's content.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentRules {
    /// How the length is counted.
    pub counts: TextCount,
    /// The most hashtags a post may have, where the platform limits them (Instagram's 30).
    pub max_hashtags: Option<usize>,
    /// The longest post, as [`ContentRules::counts`] counts.
    pub max_chars: usize,
    /// Whether a post of text alone can be published. YouTube, Pinterest, Instagram and TikTok
    /// need an image or a video.
    pub publishes_text: bool,
    /// Whether herald's adapter publishes a post's media there yet. Until it does, a post with
    /// media for that platform is refused at creation rather than published without them.
    pub publishes_media: bool,
    /// What media a post may carry there.
    pub media: MediaRules,
    /// What may follow a post there: replies (a thread, and a first comment as the last reply)
    /// or a first comment on the post.
    pub chains: Chains,
}

/// What may follow a post on a platform, as far as the platform and herald's adapter allow it.
/// Neither: a thread or a first comment is refused at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chains {
    /// Each item of a thread is published as a reply to the one before (X, Bluesky, Threads,
    /// Mastodon). Without `comments`, a first comment is one more reply, to the last item.
    pub replies: bool,
    /// A first comment is posted on the published post (Instagram, Facebook, LinkedIn, YouTube).
    pub comments: bool,
}

impl Chains {
    /// Nothing may follow a post.
    pub const NONE: Chains = Chains { replies: false, comments: false };
    /// Threads of replies; a first comment is the last reply.
    pub const REPLIES: Chains = Chains { replies: true, comments: false };
    /// A first comment on the post; no threads.
    pub const COMMENTS: Chains = Chains { replies: false, comments: true };

    /// Whether a first comment can be published at all.
    pub fn first_comment(self) -> bool {
        self.replies || self.comments
    }
}

/// How long a URL is on X (t.co) and Mastodon, whatever its own length.
pub const URL_LENGTH: usize = 23;

/// `text`'s length as `count` counts it.
pub fn length(count: TextCount, text: &str) -> usize {
    match count {
        TextCount::Characters => text.chars().count(),
        TextCount::Graphemes => text.graphemes(true).count(),
        TextCount::XWeighted => {
            let (rest, urls) = without_urls(text);
            urls * URL_LENGTH + rest.graphemes(true).map(x_weight).sum::<usize>()
        }
        TextCount::Mastodon => {
            let (rest, urls) = without_urls(text);
            let rest: Vec<&str> = rest.split(' ').map(local_mention).collect();
            urls * URL_LENGTH + rest.join(" ").graphemes(true).count()
        }
    }
}

/// How `count` counts, for a refusal's message.
pub fn counting_note(count: TextCount) -> &'static str {
    match count {
        TextCount::Characters => "characters",
        TextCount::Graphemes => "characters (graphemes)",
        TextCount::XWeighted => "weighted characters (URLs count 23, wide characters and emoji 2)",
        TextCount::Mastodon => "characters (URLs count 23)",
    }
}

/// How many hashtags `text` has: `#` at the start or after a space, then a letter or digit.
pub fn hashtags(text: &str) -> usize {
    text.split_whitespace()
        .filter(|word| word.strip_prefix('#').and_then(|tag| tag.chars().next()).is_some_and(char::is_alphanumeric))
        .count()
}

/// `text` with its URLs (`http://` or `https://` up to the next space, less trailing
/// punctuation) taken out and replaced by a space, and how many there were.
fn without_urls(text: &str) -> (String, usize) {
    let mut rest = String::with_capacity(text.len());
    let mut urls = 0;
    for (index, word) in text.split(' ').enumerate() {
        if index > 0 {
            rest.push(' ');
        }
        let url_start = ["https://", "http://"].iter().filter_map(|scheme| word.find(scheme)).min();
        match url_start {
            Some(start) if word.len() > start + "http://".len() => {
                let url = &word[start..];
                let kept = url.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"']);
                rest.push_str(&word[..start]);
                rest.push_str(&url[kept.len()..]);
                urls += 1;
            }
            _ => rest.push_str(word),
        }
    }
    (rest, urls)
}

/// `@user@domain` as `@user`; any other word as it is.
fn local_mention(word: &str) -> &str {
    match word.strip_prefix('@').and_then(|mention| mention.find('@')) {
        Some(at) => &word[..=at],
        None => word,
    }
}

/// One grapheme's weight on X: an emoji (anything with a code point from the pictographic
/// planes, or a variation selector / joiner sequence) is 2; otherwise each code point is 1 in
/// twitter-text's light ranges and 2 outside them.
fn x_weight(grapheme: &str) -> usize {
    let emoji =
        grapheme.chars().any(|c| ('\u{1F000}'..='\u{1FAFF}').contains(&c) || c == '\u{FE0F}' || c == '\u{200D}');
    if emoji {
        return 2;
    }
    grapheme.chars().map(|c| if light(c) { 1 } else { 2 }).sum()
}

/// twitter-text v3's ranges of weight 100 (one character).
fn light(c: char) -> bool {
    matches!(u32::from(c), 0..=4351 | 8192..=8205 | 8208..=8223 | 8242..=8247)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_weighs_urls_wide_characters_and_emoji_as_x_does() {
        assert_eq!(length(TextCount::XWeighted, "hello"), 5);
        assert_eq!(length(TextCount::XWeighted, "see https://example.com/a/very/long/path?with=query."), 4 + 23 + 1);
        assert_eq!(length(TextCount::XWeighted, "日本語"), 6, "CJK weighs 2");
        assert_eq!(length(TextCount::XWeighted, "👍"), 2);
        assert_eq!(length(TextCount::XWeighted, "👨‍👩‍👧"), 2, "one ZWJ sequence is one emoji");
        assert_eq!(length(TextCount::XWeighted, "café — “quoted”"), 15, "Latin-1 and general punctuation weigh 1");
        assert_eq!(length(TextCount::XWeighted, &"a".repeat(280)), 280);
        assert_eq!(length(TextCount::XWeighted, &"字".repeat(141)), 282);
    }

    #[test]
    fn bluesky_counts_graphemes_and_mastodon_shortens_urls_and_remote_mentions() {
        assert_eq!(length(TextCount::Graphemes, "e\u{301}👨‍👩‍👧"), 2);
        assert_eq!(length(TextCount::Characters, "e\u{301}👨‍👩‍👧"), 7);
        assert_eq!(length(TextCount::Mastodon, "hi @ada@example.social https://example.com/x"), "hi @ada ".len() + 23);
        assert_eq!(length(TextCount::Mastodon, "mail me@example.com"), "mail me@example.com".len());
    }

    #[test]
    fn hashtags_are_words_that_start_with_a_hash_and_a_letter_or_digit() {
        assert_eq!(hashtags("#one two #three #4 # #-no a#b"), 3);
    }
}
