//! WebM (EBML/Matroska): the few elements platform rules need, read from the start of the file
//! (muxers write `Info` and `Tracks` before the first `Cluster`). A small reader of its own: the
//! Matroska crates want a seekable file, and these are six element ids.

use super::VideoFacts;

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const DEFAULT_DURATION: u32 = 0x23_E383;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const CLUSTER: u32 = 0x1F43_B675;

/// One element: its id and its body (cut at the end of the bytes when its size runs past them,
/// or is "unknown", as a live-written `Segment`'s is).
struct Element<'a> {
    id: u32,
    body: &'a [u8],
    /// True when the body is all there.
    whole: bool,
}

/// The elements in `bytes`, in order, stopping at the first that cannot be read.
fn elements(mut bytes: &[u8]) -> impl Iterator<Item = Element<'_>> {
    std::iter::from_fn(move || {
        let (id, id_len) = vint(bytes, false)?;
        let (size, size_len) = vint(bytes.get(id_len..)?, true)?;
        let start = id_len + size_len;
        let available = bytes.len() - start;
        let (len, whole) = match size {
            Some(size) => {
                usize::try_from(size).map_or((available, false), |size| (size.min(available), size <= available))
            }
            None => (available, false),
        };
        let element = Element { id: u32::try_from(id?).ok()?, body: &bytes[start..start + len], whole };
        bytes = &bytes[start + len..];
        Some(element)
    })
}

/// An EBML variable-length integer at the start of `bytes` and its length. For an id the marker
/// bit stays; for a size it goes, and all ones means unknown (`None`).
fn vint(bytes: &[u8], is_size: bool) -> Option<(Option<u64>, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || bytes.len() < len {
        return None;
    }
    let mask = 0xFFu8.checked_shr(u32::try_from(len).ok()?).unwrap_or(0);
    let mut value = u64::from(if is_size { first & mask } else { first });
    for byte in &bytes[1..len] {
        value = (value << 8) | u64::from(*byte);
    }
    let unknown = is_size && value == (1u64 << (7 * len)) - 1;
    Some((if unknown { None } else { Some(value) }, len))
}

fn unsigned(body: &[u8]) -> Option<u64> {
    (body.len() <= 8).then(|| body.iter().fold(0u64, |value, byte| (value << 8) | u64::from(*byte)))
}

fn float(body: &[u8]) -> Option<f64> {
    match body.len() {
        4 => Some(f64::from(f32::from_be_bytes(body.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(body.try_into().ok()?)),
        _ => None,
    }
}

/// The video facts of a webm whose first bytes are `head`.
pub fn parse_webm(head: &[u8]) -> Result<VideoFacts, String> {
    let mut top = elements(head);
    if top.next().map(|element| element.id) != Some(EBML) {
        return Err("no EBML header".to_owned());
    }
    let segment = top.find(|element| element.id == SEGMENT).ok_or("no Segment")?;
    let mut facts = VideoFacts::default();
    let (mut scale, mut duration, mut tracks_seen) = (1_000_000u64, None, false);
    for element in elements(segment.body) {
        match element.id {
            INFO if element.whole => {
                for field in elements(element.body) {
                    match field.id {
                        TIMESTAMP_SCALE => scale = unsigned(field.body).filter(|scale| *scale > 0).unwrap_or(scale),
                        DURATION => duration = float(field.body),
                        _ => {}
                    }
                }
            }
            TRACKS if element.whole => {
                tracks_seen = true;
                for entry in elements(element.body).filter(|entry| entry.id == TRACK_ENTRY) {
                    track(entry.body, &mut facts);
                }
            }
            CLUSTER => break,
            _ => {}
        }
    }
    if !tracks_seen {
        return Err("no Tracks before the media data".to_owned());
    }
    if facts.video_codec.is_none() {
        return Err("no video track".to_owned());
    }
    facts.duration_ms = duration.map(|ticks| (ticks * scale as f64 / 1_000_000.0).round() as i64);
    Ok(facts)
}

/// Adds what one `TrackEntry` says to `facts` (the first video and the first audio track count).
fn track(entry: &[u8], facts: &mut VideoFacts) {
    let (mut kind, mut codec, mut frame_ns, mut size) = (0, None, None, (None, None));
    for field in elements(entry) {
        match field.id {
            TRACK_TYPE => kind = unsigned(field.body).unwrap_or(0),
            CODEC_ID => codec = Some(String::from_utf8_lossy(field.body).trim_end_matches('\0').to_owned()),
            DEFAULT_DURATION => frame_ns = unsigned(field.body).filter(|ns| *ns > 0),
            VIDEO => {
                for dimension in elements(field.body) {
                    let value = unsigned(dimension.body).and_then(|value| i32::try_from(value).ok());
                    match dimension.id {
                        PIXEL_WIDTH => size.0 = value,
                        PIXEL_HEIGHT => size.1 = value,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match kind {
        1 if facts.video_codec.is_none() => {
            facts.video_codec = Some(codec_name(codec.as_deref().unwrap_or("")));
            (facts.width, facts.height) = size;
            facts.frame_rate = frame_ns.map(|ns| (1e12 / ns as f64).round() / 1000.0);
        }
        2 if facts.audio_codec.is_none() => facts.audio_codec = Some(codec_name(codec.as_deref().unwrap_or(""))),
        _ => {}
    }
}

/// The plain name of a Matroska codec id (`V_VP9` is `vp9`), as [`super::mp4`] names them.
fn codec_name(id: &str) -> String {
    match id {
        "V_VP8" => "vp8",
        "V_VP9" => "vp9",
        "V_AV1" => "av1",
        "V_MPEG4/ISO/AVC" => "h264",
        "V_MPEGH/ISO/HEVC" => "hevc",
        "A_OPUS" => "opus",
        "A_VORBIS" => "vorbis",
        "A_AAC" => "aac",
        "" => "unknown",
        other => return other.to_ascii_lowercase(),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::samples::{element, webm};

    #[test]
    fn info_and_tracks_give_the_facts() {
        let facts = parse_webm(&webm(1920, 1080, 25, 12_345.0)).unwrap();
        assert_eq!((facts.width, facts.height), (Some(1920), Some(1080)));
        assert_eq!(facts.duration_ms, Some(12_345));
        assert_eq!(facts.frame_rate, Some(25.0));
        assert_eq!(facts.video_codec.as_deref(), Some("vp9"));
        assert_eq!(facts.audio_codec.as_deref(), Some("opus"));
    }

    #[test]
    fn sizes_and_ids_read_as_ebml_says() {
        assert_eq!(vint(&[0x81], true), Some((Some(1), 1)));
        assert_eq!(vint(&[0x40, 0x02], true), Some((Some(2), 2)));
        assert_eq!(vint(&[0xFF], true), Some((None, 1)), "all ones is unknown");
        assert_eq!(vint(&[0x1A, 0x45, 0xDF, 0xA3], false), Some((Some(u64::from(EBML)), 4)));
        assert_eq!(vint(&[0x00], true), None);
    }

    #[test]
    fn what_is_not_a_webm_video_is_refused() {
        assert!(parse_webm(b"RIFF....WEBPVP8 ").is_err());
        let no_tracks = [element(EBML, &[]), element(SEGMENT, &element(INFO, &[]))].concat();
        assert_eq!(parse_webm(&no_tracks).unwrap_err(), "no Tracks before the media data");
        let file = webm(640, 360, 30, 1000.0);
        assert!(parse_webm(&file[..60]).is_err(), "cut inside Tracks");
    }
}
