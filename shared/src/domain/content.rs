//! What a platform accepts as a post's content, as a plain value: the post validation (a use
//! case) checks a post against it without knowing the platforms, which fill it in from their
//! specs (`platforms::PlatformSpec::content`).

use super::media_rules::MediaRules;

/// A platform's limits on a post's content.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentRules {
    /// The most characters a post may have.
    pub max_chars: usize,
    /// Whether a post of text alone can be published. YouTube, Pinterest, Instagram and TikTok
    /// need an image or a video.
    pub publishes_text: bool,
    /// Whether herald's adapter publishes a post's media there yet. Until it does, a post with
    /// media for that platform is refused at creation rather than published without them.
    pub publishes_media: bool,
    /// What media a post may carry there.
    pub media: MediaRules,
}
