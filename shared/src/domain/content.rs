//! What a platform takes in a post, as its adapter's spec states it: the value the post checks
//! (`crate::commands::posts`) are made against, so checking a post needs no platform code.

/// The content rules of one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRules {
    /// The most characters (Unicode scalar values) a post may have.
    pub max_chars: usize,
    /// Whether a post of text alone can be published. YouTube, Pinterest, Instagram and TikTok
    /// need an image or a video, which posts cannot carry yet.
    pub publishes_text: bool,
}
