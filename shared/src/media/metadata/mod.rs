//! The metadata of a stored object, read from its bytes: an image's width and height from its
//! header, a video's duration, dimensions, frame rate and codecs from its container (ISO BMFF
//! `moov` for mp4/mov, EBML `Info` and `Tracks` for webm). Readers of bytes are pure and tested
//! on files the tests build; [`describe`] fetches the bytes they need from the store.

mod mp4;
mod webm;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::ingest::Written;
use super::{IngestError, MediaStore};
use crate::domain::media::{MediaFacts, MediaKind};

pub use mp4::{find_moov, parse_mp4};
pub use webm::parse_webm;

/// What a video container says; `None` where it does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoFacts {
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_ms: Option<i64>,
    pub frame_rate: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
}

/// An image's width and height from the start of the file (JPEG, PNG, GIF, WebP headers), without
/// decoding it.
pub fn image_dimensions(head: &[u8]) -> Option<(i32, i32)> {
    let size = imagesize::blob_size(head).ok()?;
    let width = i32::try_from(size.width).ok()?;
    let height = i32::try_from(size.height).ok()?;
    (width > 0 && height > 0).then_some((width, height))
}

/// The facts of the object just written at `key`.
pub(super) async fn describe(
    media: &MediaStore,
    key: &str,
    kind: MediaKind,
    content_type: &str,
    written: Written,
) -> Result<MediaFacts, IngestError> {
    let malformed = |problem: String| IngestError::Malformed { content_type: content_type.to_owned(), problem };
    let video = match (kind, content_type) {
        (MediaKind::Image, _) => {
            let (width, height) =
                image_dimensions(&written.head).ok_or_else(|| malformed("no width and height in its header".into()))?;
            VideoFacts { width: Some(width), height: Some(height), ..VideoFacts::default() }
        }
        (MediaKind::Video, "video/webm") => parse_webm(&written.head).map_err(malformed)?,
        (MediaKind::Video, _) => {
            let path = Path::from(key);
            let read = |range: std::ops::Range<u64>| {
                let (store, path) = (&media.store, &path);
                async move { store.get_range(path, range).await }
            };
            let boxes = find_moov(&written.head, written.size, read).await?.map_err(malformed)?;
            parse_mp4(&boxes).map_err(malformed)?
        }
    };
    Ok(MediaFacts {
        kind,
        content_type: content_type.to_owned(),
        size_bytes: i64::try_from(written.size).unwrap_or(i64::MAX),
        sha256: written.sha256,
        width: video.width,
        height: video.height,
        duration_ms: video.duration_ms,
        frame_rate: video.frame_rate,
        video_codec: video.video_codec,
        audio_codec: video.audio_codec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::samples::{jpeg, png};

    #[test]
    fn image_dimensions_come_from_the_header() {
        assert_eq!(image_dimensions(&png(640, 480)), Some((640, 480)));
        assert_eq!(image_dimensions(&jpeg(1080, 1350)), Some((1080, 1350)));
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[0x40, 0x01, 0xF0, 0x00, 0, 0, 0]);
        assert_eq!(image_dimensions(&gif), Some((320, 240)));
        assert_eq!(image_dimensions(b"not an image"), None);
        assert_eq!(image_dimensions(&png(640, 480)[..16]), None, "cut before the size");
    }
}
