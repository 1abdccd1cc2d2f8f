//! Tiny valid media files, built byte by byte: for the unit tests, the end-to-end tests and the
//! benches (which need files of a given size and shape without shipping any). Each is just enough
//! of its format for the sniffer and the metadata readers, and says what it holds.

/// A PNG signature and `IHDR` of `width` x `height` (enough for the header readers).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    png
}

/// A JPEG with an `APP0` segment, then `SOF0` of `width` x `height`.
pub fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    jpeg.extend_from_slice(b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00");
    jpeg.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    jpeg.extend_from_slice(&height.to_be_bytes());
    jpeg.extend_from_slice(&width.to_be_bytes());
    jpeg.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    jpeg
}

// An mp4 built box by box: `ftyp`, `mdat`, then `moov` (at the end, as many encoders leave it)
// with one `avc1` video track and one `mp4a` audio track.

fn boxed(name: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 8).unwrap_or(u32::MAX).to_be_bytes().to_vec();
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
    // creation, modification, id, reserved, duration, reserved x2, layer and group, volume.
    let mut body = be32(&[0, 0, id, 0, duration, 0, 0, 0, 0]);
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
        0x03, 0x19, 0x00, 0x01, 0x00, 0x04, 0x11, 0x40, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x05, 0x02, 0x12, 0x10, 0x06, 0x01, 0x02,
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

fn trak(
    id: u32,
    handler: &[u8; 4],
    size: (u32, u32),
    timescale: u32,
    samples: u32,
    delta: u32,
    entry: Vec<u8>,
) -> Vec<u8> {
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
pub fn mp4(width: u16, height: u16, seconds: u32, mdat_bytes: u32) -> Vec<u8> {
    let (mut file, moov) = mp4_around(width, height, seconds, mdat_bytes);
    file.resize(file.len() + mdat_bytes as usize, 0);
    file.extend_from_slice(&moov);
    file
}

/// The same mp4 as [`mp4`] in the two pieces around its `mdat_bytes` of media data, so a bench can
/// stream a large file (the payload being zeros) without building it in memory.
pub fn mp4_around(width: u16, height: u16, seconds: u32, mdat_bytes: u32) -> (Vec<u8>, Vec<u8>) {
    let mut before = boxed(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
    before.extend_from_slice(&mdat_bytes.saturating_add(8).to_be_bytes());
    before.extend_from_slice(b"mdat");
    let mut moov = mvhd(1000, seconds * 1000);
    let size = (u32::from(width), u32::from(height));
    moov.extend_from_slice(&trak(1, b"vide", size, 15_360, seconds * 30, 512, avc1(width, height)));
    moov.extend_from_slice(&trak(2, b"soun", (0, 0), 44_100, seconds * 44_100 / 1024, 1024, mp4a()));
    (before, boxed(b"moov", &moov))
}

// A webm: the EBML header, then a Segment of unknown size (as live muxers write it) holding Info,
// Tracks (VP9 video, Opus audio) and the start of a Cluster.

/// One element with a one-to-four byte id and an eight-byte size.
pub fn element(id: u32, body: &[u8]) -> Vec<u8> {
    let id_bytes = id.to_be_bytes();
    let skip = id_bytes.iter().position(|byte| *byte != 0).unwrap_or(3);
    let mut out = id_bytes[skip..].to_vec();
    out.push(0x01);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

fn uint(id: u32, value: u64) -> Vec<u8> {
    element(id, &value.to_be_bytes())
}

/// A webm of `width` x `height` VP9 at `fps`, lasting `duration_ms`.
pub fn webm(width: u64, height: u64, fps: u64, duration_ms: f64) -> Vec<u8> {
    // The EBML header as muxers write it (one-byte sizes: `infer` looks for `42 82 84 webm`).
    let mut file = b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\xF7\x81\x01\x42\xF2\x81\x04\x42\xF3\x81\x08".to_vec();
    file.extend_from_slice(b"\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02");
    let info =
        element(0x1549_A966, &[uint(0x2A_D7B1, 1_000_000), element(0x4489, &duration_ms.to_be_bytes())].concat());
    let video = element(0xE0, &[uint(0xB0, width), uint(0xBA, height)].concat());
    let video_track = element(
        0xAE,
        &[uint(0xD7, 1), uint(0x83, 1), element(0x86, b"V_VP9"), uint(0x23_E383, 1_000_000_000 / fps), video].concat(),
    );
    let audio_track = element(0xAE, &[uint(0xD7, 2), uint(0x83, 2), element(0x86, b"A_OPUS")].concat());
    let tracks = element(0x1654_AE6B, &[video_track, audio_track].concat());
    let cluster = element(0x1F43_B675, &[uint(0xE7, 0), element(0xA3, &[0x81, 0, 0, 0x80]), vec![0; 512]].concat());
    let mut segment = vec![0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    segment.extend_from_slice(&[info, tracks, cluster].concat());
    file.extend_from_slice(&segment);
    file
}
