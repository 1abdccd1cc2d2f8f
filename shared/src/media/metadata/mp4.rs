//! ISO BMFF (mp4, mov, m4v): find the `moov` box among the top-level boxes with ranged reads (it
//! may come after the `mdat`, at the end of the file), then let Mozilla's `mp4parse` read it.

use std::future::Future;
use std::io::Cursor;
use std::ops::Range;

use bytes::Bytes;
use mp4parse::{CodecType, ParseStrictness, SampleEntry, TrackType};

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
    let read_at = async |range: Range<u64>| -> Result<Bytes, object_store::Error> {
        match usize::try_from(range.end) {
            Ok(end) if end <= head.len() => Ok(Bytes::copy_from_slice(&head[range.start as usize..end])),
            _ => read(range).await,
        }
    };
    let mut found = Vec::new();
    let mut offset = 0u64;
    for _ in 0..MAX_BOXES {
        if offset + 8 > size {
            break;
        }
        let header = read_at(offset..(offset + 16).min(size)).await?;
        let Some((box_size, name)) = box_header(&header, size - offset) else {
            return Ok(Err(format!("a broken box header at byte {offset}")));
        };
        if &name == b"moov" || &name == b"ftyp" {
            if box_size > MAX_MOOV_BYTES {
                return Ok(Err(format!("a {} box of {box_size} bytes", String::from_utf8_lossy(&name))));
            }
            found.extend_from_slice(&read_at(offset..offset + box_size).await?);
            if &name == b"moov" {
                return Ok(Ok(found));
            }
        }
        offset += box_size;
    }
    Ok(Err("no moov box".to_owned()))
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
    let context = mp4parse::read_mp4(&mut Cursor::new(boxes), ParseStrictness::Permissive)
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
    let samples: u64 = video.stts.as_ref().map_or(0, |stts| stts.samples.iter().map(|run| u64::from(run.sample_count)).sum());
    let frame_rate = seconds.filter(|seconds| *seconds > 0.0 && samples > 0).map(|seconds| round(samples as f64 / seconds));
    let audio_codec = audio.and_then(|track| track.stsd.as_ref()).and_then(|stsd| {
        stsd.descriptions.iter().find_map(|entry| match entry {
            SampleEntry::Audio(audio) => Some(codec_name(audio.codec_type)),
            _ => None,
        })
    });
    Ok(VideoFacts {
        width: i32::try_from(width).ok().filter(|width| *width > 0),
        height: i32::try_from(height).ok().filter(|height| *height > 0),
        duration_ms: seconds.map(|seconds| (seconds * 1000.0).round() as i64),
        frame_rate,
        video_codec: entry.map(|entry| codec_name(entry.codec_type)),
        audio_codec,
    })
}

/// Frame rates to three decimals (29.97 stays 29.97).
fn round(rate: f64) -> f64 {
    (rate * 1000.0).round() / 1000.0
}

/// One name per codec whatever the container calls it, so platform rules compare plain names.
fn codec_name(codec: CodecType) -> String {
    match codec {
        CodecType::H264 => "h264",
        CodecType::HEVC => "hevc",
        CodecType::AV1 => "av1",
        CodecType::VP9 => "vp9",
        CodecType::VP8 => "vp8",
        CodecType::MP4V => "mpeg4",
        CodecType::H263 => "h263",
        CodecType::AAC | CodecType::XHEAAC => "aac",
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
pub(crate) mod samples {
    //! A minimal mp4 built box by box: `ftyp`, `mdat`, then `moov` (at the end, as many encoders
    //! leave it) with one `avc1` video track and one `mp4a` audio track.

    fn boxed(name: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len() + 8).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(name);
        out.extend_from_slice(body);
        out
    }

    fn full(name: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut with_version = vec![0, 0, 0, 0];
        with_version.extend_from_slice(body);
        boxed(name, &with_version)
    }

    fn be32(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|value| value.to_be_bytes()).collect()
    }

    const MATRIX: [u32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

    fn mvhd(timescale: u32, duration: u32) -> Vec<u8> {
        let mut body = be32(&[0, 0, timescale, duration, 0x10000]);
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&be32(&MATRIX));
        body.extend_from_slice(&[0; 24]);
        body.extend_from_slice(&be32(&[3]));
        full(b"mvhd", &body)
    }

    fn tkhd(id: u32, duration: u32, width: u32, height: u32) -> Vec<u8> {
        let mut body = be32(&[0, 0, id, 0, duration, 0, 0, 0]);
        body.extend_from_slice(&be32(&MATRIX));
        body.extend_from_slice(&be32(&[width << 16, height << 16]));
        let mut with_flags = vec![0, 0, 0, 7];
        with_flags.extend_from_slice(&body);
        boxed(b"tkhd", &with_flags)
    }

    fn mdhd(timescale: u32, duration: u32) -> Vec<u8> {
        let mut body = be32(&[0, 0, timescale, duration]);
        body.extend_from_slice(&[0x55, 0xC4, 0, 0]);
        full(b"mdhd", &body)
    }

    fn hdlr(kind: &[u8; 4]) -> Vec<u8> {
        let mut body = be32(&[0]);
        body.extend_from_slice(kind);
        body.extend_from_slice(&[0; 12]);
        body.push(0);
        full(b"hdlr", &body)
    }

    fn avc1(width: u16, height: u16) -> Vec<u8> {
        let mut body = vec![0; 6];
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&width.to_be_bytes());
        body.extend_from_slice(&height.to_be_bytes());
        body.extend_from_slice(&be32(&[0x0048_0000, 0x0048_0000, 0]));
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&0x0018u16.to_be_bytes());
        body.extend_from_slice(&0xFFFFu16.to_be_bytes());
        // avcC: version 1, profile 66 (baseline), level 30, no SPS or PPS.
        body.extend_from_slice(&boxed(b"avcC", &[1, 66, 0, 30, 0xFF, 0xE0, 0]));
        boxed(b"avc1", &body)
    }

    fn mp4a() -> Vec<u8> {
        let mut body = vec![0; 6];
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&16u16.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&be32(&[44_100 << 16]));
        // esds: ES descriptor with a decoder config for AAC LC (object type 0x40), 44.1 kHz stereo.
        let esds = [
            0x03, 0x19, 0x00, 0x01, 0x00, 0x04, 0x11, 0x40, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x05, 0x02, 0x12, 0x10, 0x06, 0x01, 0x02,
        ];
        body.extend_from_slice(&full(b"esds", &esds));
        boxed(b"mp4a", &body)
    }

    fn stbl(entry: Vec<u8>, samples: u32, delta: u32) -> Vec<u8> {
        let mut stsd = be32(&[1]);
        stsd.extend_from_slice(&entry);
        let mut body = full(b"stsd", &stsd);
        body.extend_from_slice(&full(b"stts", &be32(&[1, samples, delta])));
        body.extend_from_slice(&full(b"stsc", &be32(&[0])));
        body.extend_from_slice(&full(b"stsz", &be32(&[0, 0])));
        body.extend_from_slice(&full(b"stco", &be32(&[0])));
        boxed(b"stbl", &body)
    }

    #[allow(clippy::too_many_arguments)]
    fn trak(id: u32, handler: &[u8; 4], size: (u32, u32), timescale: u32, samples: u32, delta: u32, entry: Vec<u8>) -> Vec<u8> {
        let duration = samples * delta;
        let mut minf = if handler == b"vide" { full(b"vmhd", &[0; 8]) } else { full(b"smhd", &[0; 4]) };
        minf.extend_from_slice(&stbl(entry, samples, delta));
        let mut mdia = mdhd(timescale, duration);
        mdia.extend_from_slice(&hdlr(handler));
        mdia.extend_from_slice(&boxed(b"minf", &minf));
        let mut body = tkhd(id, duration * 1000 / timescale, size.0, size.1);
        body.extend_from_slice(&boxed(b"mdia", &mdia));
        boxed(b"trak", &body)
    }

    /// An mp4 of `seconds` seconds of `width` x `height` video at 30 fps (timescale 15360, as
    /// ffmpeg writes), plus AAC audio, with `mdat_bytes` of media data before the `moov`.
    pub fn mp4(width: u16, height: u16, seconds: u32, mdat_bytes: usize) -> Vec<u8> {
        let mut file = boxed(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
        file.extend_from_slice(&boxed(b"mdat", &vec![0; mdat_bytes]));
        let mut moov = mvhd(1000, seconds * 1000);
        let size = (u32::from(width), u32::from(height));
        moov.extend_from_slice(&trak(1, b"vide", size, 15_360, seconds * 30, 512, avc1(width, height)));
        moov.extend_from_slice(&trak(2, b"soun", (0, 0), 44_100, seconds * 44_100 / 1024, 1024, mp4a()));
        file.extend_from_slice(&boxed(b"moov", &moov));
        file
    }
}

#[cfg(test)]
mod tests {
    use super::samples::mp4;
    use super::*;

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
    async fn a_file_without_a_moov_is_malformed() {
        let file = mp4(640, 360, 1, 100);
        let cut = &file[..file.len() - 200];
        assert!(boxes_of(cut, 64).await.is_err(), "a moov box cut short runs past the end");
        let no_moov = &file[..32 + 108];
        assert!(boxes_of(no_moov, 64).await.is_err());
        assert!(parse_mp4(b"not a box").is_err());
    }
}
