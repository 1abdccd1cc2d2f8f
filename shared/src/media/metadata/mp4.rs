//! ISO BMFF (mp4, mov, m4v): find the `moov` box among the top-level boxes with ranged reads (it
//! may come after the `mdat`, at the end of the file), then let Mozilla's `mp4parse` read it.

use std::future::Future;
use std::io::Cursor;
use std::ops::Range;

use bytes::Bytes;
use mp4parse::{CodecType, SampleEntry, TrackType};

use super::VideoFacts;

/// The largest `moov` read into memory. A movie's index grows with its length (about 1 MB per
/// hour of 30 fps video); past this it is refused rather than buffered.
pub const MAX_MOOV_BYTES: u64 = 32 * 1024 * 1024;
/// The most top-level boxes walked before giving up.
const MAX_BOXES: usize = 1024;

/// The `ftyp` (if any) and `moov` boxes of an object of `size` bytes, whose first bytes are
/// `head`, reading the rest through `read` (a ranged read of the object). The outer error is the
/// store's; the inner one says what is wrong with the file.
pub async fn find_moov<F, Fut>(head: &[u8], size: u64, read: F) -> Result<Result<Vec<u8>, String>, object_store::Error>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, object_store::Error>>,
{
    let mut found = Vec::new();
    let mut offset = 0u64;
    for _ in 0..MAX_BOXES {
        if offset + 8 > size {
            break;
        }
        let header = read_at(head, &read, offset..(offset + 16).min(size)).await?;
        let Some((box_size, name)) = box_header(&header, size - offset) else {
            return Ok(Err(format!("a broken box header at byte {offset}")));
        };
        if &name == b"moov" || &name == b"ftyp" {
            if box_size > MAX_MOOV_BYTES {
                return Ok(Err(format!("a {} box of {box_size} bytes", String::from_utf8_lossy(&name))));
            }
            found.extend_from_slice(&read_at(head, &read, offset..offset + box_size).await?);
            if &name == b"moov" {
                return Ok(Ok(found));
            }
        }
        offset += box_size;
    }
    Ok(Err("no moov box".to_owned()))
}

/// The bytes `range` of the object: from `head` when it holds them, else read.
async fn read_at<F, Fut>(head: &[u8], read: &F, range: Range<u64>) -> Result<Bytes, object_store::Error>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, object_store::Error>>,
{
    match (usize::try_from(range.start), usize::try_from(range.end)) {
        (Ok(start), Ok(end)) if end <= head.len() => Ok(Bytes::copy_from_slice(&head[start..end])),
        _ => read(range).await,
    }
}

/// The size and type of the box whose header starts `header`, at most `left` bytes long.
fn box_header(header: &[u8], left: u64) -> Option<(u64, [u8; 4])> {
    let small = u64::from(u32::from_be_bytes(header.get(0..4)?.try_into().ok()?));
    let name: [u8; 4] = header.get(4..8)?.try_into().ok()?;
    let (size, header_len) = match small {
        0 => (left, 8),
        1 => (u64::from_be_bytes(header.get(8..16)?.try_into().ok()?), 16),
        size => (size, 8),
    };
    (size >= header_len && size <= left).then_some((size, name))
}

/// The video facts in `boxes`: an `ftyp` and a `moov` as [`find_moov`] returns them.
pub fn parse_mp4(boxes: &[u8]) -> Result<VideoFacts, String> {
    let context = mp4parse::read_mp4(&mut Cursor::new(boxes))
        .map_err(|error| format!("the moov box does not parse: {error:?}"))?;
    let video = context.tracks.iter().find(|track| track.track_type == TrackType::Video).ok_or("no video track")?;
    let audio = context.tracks.iter().find(|track| track.track_type == TrackType::Audio);
    let entry = video.stsd.as_ref().and_then(|stsd| {
        stsd.descriptions.iter().find_map(|entry| match entry {
            SampleEntry::Video(video) => Some(video),
            _ => None,
        })
    });
    let (mut width, mut height) = video.tkhd.as_ref().map_or((0, 0), |tkhd| (tkhd.width >> 16, tkhd.height >> 16));
    if width == 0 || height == 0 {
        (width, height) = entry.map_or((0, 0), |entry| (u32::from(entry.width), u32::from(entry.height)));
    }
    let timescale = video.timescale.map(|scale| scale.0).filter(|scale| *scale > 0);
    let duration = video.duration.map(|duration| duration.0);
    let seconds = timescale.zip(duration).map(|(scale, duration)| duration as f64 / scale as f64);
    let samples: u64 =
        video.stts.as_ref().map_or(0, |stts| stts.samples.iter().map(|run| u64::from(run.sample_count)).sum());
    let frame_rate =
        seconds.filter(|seconds| *seconds > 0.0 && samples > 0).map(|seconds| round(samples as f64 / seconds));
    let audio_codec = audio.and_then(|track| track.stsd.as_ref()).and_then(|stsd| {
        stsd.descriptions.iter().find_map(|entry| match entry {
            SampleEntry::Audio(audio) => Some(codec_name(audio.codec_type)),
            _ => None,
        })
    });
    let video_codec = match entry.map(|entry| codec_name(entry.codec_type)) {
        Some(name) if name != "unknown" => Some(name),
        _ => sample_entry_types(boxes).into_iter().find_map(|name| video_codec_of(&name)),
    };
    Ok(VideoFacts {
        width: i32::try_from(width).ok().filter(|width| *width > 0),
        height: i32::try_from(height).ok().filter(|height| *height > 0),
        duration_ms: seconds.map(|seconds| (seconds * 1000.0).round() as i64),
        frame_rate,
        video_codec,
        audio_codec,
    })
}

/// The sample entry types the `stsd` boxes in `boxes` name: the codec of a track `mp4parse` does
/// not know (HEVC, the codec of most phone videos, among them).
fn sample_entry_types(boxes: &[u8]) -> Vec<[u8; 4]> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = boxes.get(from..).and_then(|rest| rest.windows(4).position(|window| window == b"stsd")) {
        let stsd = from + at;
        // "stsd", version and flags, the entry count, the first entry's size, then its type.
        if let Some(name) = boxes.get(stsd + 16..stsd + 20).and_then(|name| <[u8; 4]>::try_from(name).ok()) {
            found.push(name);
        }
        from = stsd + 4;
    }
    found
}

/// The codec a video sample entry type names, if it is a video one.
fn video_codec_of(name: &[u8; 4]) -> Option<String> {
    let codec = match name {
        b"hvc1" | b"hev1" | b"dvh1" | b"dvhe" => "hevc",
        b"avc1" | b"avc3" => "h264",
        b"vp09" => "vp9",
        b"vp08" => "vp8",
        b"av01" => "av1",
        b"mp4v" => "mpeg4",
        b"apcn" | b"apch" | b"apcs" | b"apco" | b"ap4h" => "prores",
        _ => return None,
    };
    Some(codec.to_owned())
}

/// Frame rates to three decimals (29.97 stays 29.97).
fn round(rate: f64) -> f64 {
    (rate * 1000.0).round() / 1000.0
}

/// One name per codec whatever the container calls it, so platform rules compare plain names.
fn codec_name(codec: CodecType) -> String {
    match codec {
        CodecType::H264 => "h264",
        CodecType::AV1 => "av1",
        CodecType::VP9 => "vp9",
        CodecType::VP8 => "vp8",
        CodecType::MP4V => "mpeg4",
        CodecType::H263 => "h263",
        CodecType::AAC => "aac",
        CodecType::MP3 => "mp3",
        CodecType::Opus => "opus",
        CodecType::FLAC => "flac",
        CodecType::ALAC => "alac",
        CodecType::LPCM => "pcm",
        _ => "unknown",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::samples::mp4;

    async fn boxes_of(file: &[u8], head: usize) -> Result<Vec<u8>, String> {
        let read = |range: Range<u64>| {
            let bytes = Bytes::copy_from_slice(&file[range.start as usize..range.end as usize]);
            async move { Ok(bytes) }
        };
        find_moov(&file[..head.min(file.len())], file.len() as u64, read).await.unwrap()
    }

    #[tokio::test]
    async fn the_moov_is_found_after_the_media_data_and_read() {
        let file = mp4(1280, 720, 4, 200_000);
        let boxes = boxes_of(&file, 4096).await.unwrap();
        assert!(boxes.len() < 4096, "only ftyp and moov are read, not the mdat");
        let facts = parse_mp4(&boxes).unwrap();
        assert_eq!((facts.width, facts.height), (Some(1280), Some(720)));
        assert_eq!(facts.duration_ms, Some(4000));
        assert_eq!(facts.frame_rate, Some(30.0));
        assert_eq!(facts.video_codec.as_deref(), Some("h264"));
        assert_eq!(facts.audio_codec.as_deref(), Some("aac"));
    }

    #[tokio::test]
    async fn hevc_is_named_though_the_parser_does_not_know_it() {
        let mut file = mp4(3840, 2160, 2, 1000);
        let entry = file.windows(4).rposition(|window| window == b"avc1").unwrap();
        file[entry..entry + 4].copy_from_slice(b"hvc1");
        let config = file.windows(4).rposition(|window| window == b"avcC").unwrap();
        file[config..config + 4].copy_from_slice(b"hvcC");
        let facts = parse_mp4(&boxes_of(&file, 64).await.unwrap()).unwrap();
        assert_eq!(facts.video_codec.as_deref(), Some("hevc"));
        assert_eq!((facts.width, facts.height, facts.duration_ms), (Some(3840), Some(2160), Some(2000)));
    }

    #[tokio::test]
    async fn a_file_without_a_moov_is_malformed() {
        let file = mp4(640, 360, 1, 100);
        let cut = &file[..file.len() - 200];
        assert!(boxes_of(cut, 64).await.is_err(), "a moov box cut short runs past the end");
        let no_moov = &file[..32 + 108];
        assert!(boxes_of(no_moov, 64).await.is_err());
        assert!(parse_mp4(b"not a box").is_err());
    }
}
