//! What media a platform takes in one post, as its spec states it, and the check of a post's
//! attachments against it. Pure: the facts of each attachment (type, size, dimensions, duration)
//! come in, the broken rules go out, one sentence each, so a post's 422 can name every target and
//! every rule at once.
//!
//! The numbers are the platforms' documented limits for publishing through their APIs (see
//! PLATFORMS.md); where a platform reports live limits (a Mastodon instance's configuration,
//! TikTok's creator info) those may be tighter, and the publish itself says so.

/// A closed range of numbers a platform accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Between<T> {
    pub min: T,
    pub max: T,
}

impl<T: PartialOrd + Copy> Between<T> {
    pub const fn new(min: T, max: T) -> Self {
        Self { min, max }
    }

    fn contains(&self, value: T) -> bool {
        value >= self.min && value <= self.max
    }
}

/// The rules for one kind of media (images, or videos) on a platform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KindRules {
    /// Accepted MIME types, as sniffed from the bytes.
    pub types: &'static [&'static str],
    /// The largest file, in bytes.
    pub max_bytes: u64,
    /// How many of this kind one post may carry.
    pub max_count: usize,
    /// Width divided by height, when the platform bounds it.
    pub aspect: Option<Between<f64>>,
    /// Width in pixels, when the platform bounds it.
    pub width: Option<Between<u32>>,
    /// Height in pixels, when the platform bounds it.
    pub height: Option<Between<u32>>,
    /// Duration in milliseconds (videos), when the platform bounds it.
    pub duration_ms: Option<Between<u64>>,
}

impl KindRules {
    /// No media of this kind.
    pub const NONE: KindRules = KindRules {
        types: &[],
        max_bytes: 0,
        max_count: 0,
        aspect: None,
        width: None,
        height: None,
        duration_ms: None,
    };
}

/// What media one post may carry on a platform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediaRules {
    pub images: KindRules,
    pub videos: KindRules,
    /// The longest alt text, in characters; `None`: the platform takes none (alt text given is
    /// not published there).
    pub max_alt_text: Option<usize>,
    /// The most attachments of any kind in one post.
    pub max_items: usize,
    /// Whether images and videos may be in the same post (carousels).
    pub mixes: bool,
    /// Whether a post needs at least one attachment (Instagram, TikTok, YouTube, Pinterest).
    pub required: bool,
}

impl MediaRules {
    /// A platform that takes no media.
    pub const NONE: MediaRules = MediaRules {
        images: KindRules::NONE,
        videos: KindRules::NONE,
        max_alt_text: None,
        max_items: 0,
        mixes: false,
        required: false,
    };
}

/// One attachment as the checks see it: what its bytes turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment<'a> {
    pub is_video: bool,
    /// Its alt text's length in characters (0: none).
    pub alt_text_chars: usize,
    pub content_type: &'a str,
    pub size_bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
}

/// Every rule of `rules` that `attachments` (in the post's order) break on `platform`, as
/// sentences; empty when they fit.
pub fn broken_rules(platform: &str, rules: &MediaRules, attachments: &[Attachment<'_>]) -> Vec<String> {
    let mut broken = Vec::new();
    let images = attachments.iter().filter(|item| !item.is_video).count();
    let videos = attachments.len() - images;
    if rules.required && attachments.is_empty() {
        broken.push(format!("{platform} posts need an image or a video"));
    }
    if attachments.len() > rules.max_items {
        broken.push(format!("{platform} takes at most {} attachments in a post", rules.max_items));
    }
    for (count, kind, name) in [(images, &rules.images, "images"), (videos, &rules.videos, "videos")] {
        if count > kind.max_count {
            broken.push(match kind.max_count {
                0 => format!("{platform} takes no {name}"),
                most => format!("{platform} takes at most {most} {name} in a post"),
            });
        }
    }
    if images > 0 && videos > 0 && !rules.mixes {
        broken.push(format!("{platform} does not take images and videos in the same post"));
    }
    for (index, item) in attachments.iter().enumerate() {
        if let Some(most) = rules.max_alt_text
            && item.alt_text_chars > most
        {
            broken.push(format!(
                "media[{index}]: alt text of {} characters; {platform} takes at most {most}",
                item.alt_text_chars
            ));
        }
        let kind = if item.is_video { &rules.videos } else { &rules.images };
        if kind.max_count > 0 {
            broken.extend(
                item_problems(platform, kind, item).into_iter().map(|problem| format!("media[{index}]: {problem}")),
            );
        }
    }
    broken
}

/// What is wrong with one attachment of a kind the platform takes.
fn item_problems(platform: &str, kind: &KindRules, item: &Attachment<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if !kind.types.contains(&item.content_type) {
        problems.push(format!("{platform} does not take {} (it takes {})", item.content_type, kind.types.join(", ")));
    }
    if item.size_bytes > kind.max_bytes {
        problems.push(format!("{} bytes; {platform} takes at most {}", item.size_bytes, kind.max_bytes));
    }
    if let (Some(bounds), Some(width)) = (kind.width, item.width)
        && !bounds.contains(width)
    {
        problems.push(format!("{width} px wide; {platform} takes {} to {} px", bounds.min, bounds.max));
    }
    if let (Some(bounds), Some(height)) = (kind.height, item.height)
        && !bounds.contains(height)
    {
        problems.push(format!("{height} px high; {platform} takes {} to {} px", bounds.min, bounds.max));
    }
    if let (Some(bounds), Some(width), Some(height)) = (kind.aspect, item.width, item.height)
        && height > 0
        && !bounds.contains(f64::from(width) / f64::from(height))
    {
        problems.push(format!(
            "aspect ratio {width}:{height}; {platform} takes {:.2} to {:.2} (width / height)",
            bounds.min, bounds.max
        ));
    }
    if let Some(bounds) = kind.duration_ms {
        match item.duration_ms {
            Some(duration) if !bounds.contains(duration) => problems.push(format!(
                "{:.1} s long; {platform} takes {:.1} to {:.1} s",
                seconds(duration),
                seconds(bounds.min),
                seconds(bounds.max)
            )),
            Some(_) => {}
            None => problems.push(format!("its duration is unknown; {platform} needs one")),
        }
    }
    problems
}

fn seconds(milliseconds: u64) -> f64 {
    // Durations are at most hours: exact in an f64.
    milliseconds as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR_IMAGES_OR_ONE_VIDEO: MediaRules = MediaRules {
        images: KindRules {
            types: &["image/jpeg", "image/png"],
            max_bytes: 5_000_000,
            max_count: 4,
            aspect: None,
            width: Some(Between::new(4, 8192)),
            height: Some(Between::new(4, 8192)),
            duration_ms: None,
        },
        videos: KindRules {
            types: &["video/mp4"],
            max_bytes: 512_000_000,
            max_count: 1,
            aspect: Some(Between::new(1.0 / 3.0, 3.0)),
            width: None,
            height: None,
            duration_ms: Some(Between::new(500, 140_000)),
        },
        max_alt_text: Some(1000),
        max_items: 4,
        mixes: false,
        required: false,
    };

    fn image(content_type: &str, size_bytes: u64, width: u32, height: u32) -> Attachment<'_> {
        Attachment {
            is_video: false,
            alt_text_chars: 0,
            content_type,
            size_bytes,
            width: Some(width),
            height: Some(height),
            duration_ms: None,
        }
    }

    fn video(duration_ms: Option<u64>, width: u32, height: u32) -> Attachment<'static> {
        Attachment {
            is_video: true,
            alt_text_chars: 0,
            content_type: "video/mp4",
            size_bytes: 1_000_000,
            width: Some(width),
            height: Some(height),
            duration_ms,
        }
    }

    #[test]
    fn attachments_within_every_rule_pass() {
        let fine = [image("image/png", 100, 800, 600), image("image/jpeg", 5_000_000, 4, 8192)];
        assert!(broken_rules("x", &FOUR_IMAGES_OR_ONE_VIDEO, &fine).is_empty());
        assert!(broken_rules("x", &FOUR_IMAGES_OR_ONE_VIDEO, &[video(Some(500), 1920, 1080)]).is_empty());
        assert!(broken_rules("x", &FOUR_IMAGES_OR_ONE_VIDEO, &[]).is_empty());
    }

    #[test]
    fn counts_mixing_and_requirement_are_each_named() {
        let five = [image("image/png", 1, 10, 10); 5];
        let broken = broken_rules("x", &FOUR_IMAGES_OR_ONE_VIDEO, &five);
        assert_eq!(broken, ["x takes at most 4 attachments in a post", "x takes at most 4 images in a post"]);
        let mixed = [image("image/png", 1, 10, 10), video(Some(1000), 10, 10)];
        assert_eq!(
            broken_rules("x", &FOUR_IMAGES_OR_ONE_VIDEO, &mixed),
            ["x does not take images and videos in the same post"]
        );
        let required = MediaRules { required: true, ..FOUR_IMAGES_OR_ONE_VIDEO };
        assert_eq!(broken_rules("tiktok", &required, &[]), ["tiktok posts need an image or a video"]);
        assert_eq!(
            broken_rules("plain", &MediaRules::NONE, &[image("image/png", 1, 1, 1)]),
            ["plain takes at most 0 attachments in a post", "plain takes no images"]
        );
    }

    #[test]
    fn each_item_is_checked_for_type_size_dimensions_aspect_and_duration() {
        let items = [image("image/gif", 6_000_000, 2, 10_000), video(Some(200), 4000, 1000)];
        let rules = MediaRules { mixes: true, ..FOUR_IMAGES_OR_ONE_VIDEO };
        let broken = broken_rules("x", &rules, &items);
        assert_eq!(
            broken,
            [
                "media[0]: x does not take image/gif (it takes image/jpeg, image/png)",
                "media[0]: 6000000 bytes; x takes at most 5000000",
                "media[0]: 2 px wide; x takes 4 to 8192 px",
                "media[0]: 10000 px high; x takes 4 to 8192 px",
                "media[1]: aspect ratio 4000:1000; x takes 0.33 to 3.00 (width / height)",
                "media[1]: 0.2 s long; x takes 0.5 to 140.0 s",
            ]
        );
        let unknown = broken_rules("x", &FOUR_IMAGES_OR_ONE_VIDEO, &[video(None, 10, 10)]);
        assert_eq!(unknown, ["media[0]: its duration is unknown; x needs one"]);
        let described = Attachment { alt_text_chars: 1001, ..image("image/png", 1, 10, 10) };
        assert_eq!(
            broken_rules("x", &FOUR_IMAGES_OR_ONE_VIDEO, &[described]),
            ["media[0]: alt text of 1001 characters; x takes at most 1000"]
        );
        let no_alt_text = MediaRules { max_alt_text: None, ..FOUR_IMAGES_OR_ONE_VIDEO };
        assert!(broken_rules("x", &no_alt_text, &[described]).is_empty(), "ignored where not taken");
    }
}
