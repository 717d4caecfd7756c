//! Writing one video as an H.264 mp4 with libx264, made to give the same bytes for the same
//! pictures on every run (bitexact muxing, one thread, allocations filled with a fixed byte).

use anyhow::{ensure, Context, Result};
use ff::format::Pixel;
use ff::frame::Video as VideoFrame;
use ff::{ffi, Rational};
use ffmpeg_next as ff;
use std::path::Path;

use super::{Canvas, VideoPlan};

/// Makes glibc fill every allocation with a fixed byte. libx264 reads some bytes of its
/// own buffers before it writes them: with whatever an earlier video left in the thread's
/// heap arena there, the same video came out a few bytes different in about one run of ten
/// on 4 threads (`MALLOC_PERTURB_` made 30 runs of 30 identical). Only `synth` pays for it.
/// Elsewhere than glibc this does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn fill_fresh_memory() {
    // M_PERTURB: allocations are filled with `value ^ 0xff`, frees with `value`.
    // SAFETY: sets one global of the allocator; no pointer passes, and any value is valid.
    unsafe { libc::mallopt(libc::M_PERTURB, 0xa5) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn fill_fresh_memory() {}

/// Encodes all frames of `plan` as H.264 (libx264, yuv420p, preset veryfast, `crf`) into an mp4
/// at `path`, through `path.tmp` and a rename so a killed run leaves no half file under a
/// video name. One encoder thread: the caller runs one video per core.
pub fn write_video(plan: &VideoPlan, crf: u32, path: &Path, canvas: &mut Canvas) -> Result<()> {
    let tmp = cvrl_formats::atomic::tmp_path(path);
    encode(plan, crf, &tmp, canvas).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn encode(plan: &VideoPlan, crf: u32, path: &Path, canvas: &mut Canvas) -> Result<()> {
    let codec = ff::encoder::find_by_name("libx264")
        .context("FFmpeg has no libx264 encoder (Debian's libavcodec has one)")?;
    let mut octx = ff::format::output_as(path, "mp4").context("cannot create the mp4")?;
    // Bitexact: no library version strings in the file, so it is the same bytes everywhere.
    unsafe { (*octx.as_mut_ptr()).flags |= ffi::AVFMT_FLAG_BITEXACT };
    let global_header = octx.format().flags().contains(ff::format::Flags::GLOBAL_HEADER);
    let time_base = Rational(1, plan.fps as i32);
    let mut enc = ff::codec::context::Context::new_with_codec(codec).encoder().video()?;
    enc.set_width(plan.width);
    enc.set_height(plan.height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(Rational(plan.fps as i32, 1)));
    enc.set_colorspace(ff::color::Space::SMPTE170M);
    enc.set_color_primaries(ff::color::Primaries::SMPTE170M);
    enc.set_color_transfer_characteristic(ff::color::TransferCharacteristic::SMPTE170M);
    enc.set_color_range(ff::color::Range::MPEG);
    let mut flags = ff::codec::Flags::BITEXACT;
    if global_header {
        flags |= ff::codec::Flags::GLOBAL_HEADER;
    }
    enc.set_flags(flags);
    let mut opts = ff::Dictionary::new();
    opts.set("preset", "veryfast");
    opts.set("crf", &crf.to_string());
    opts.set("threads", "1");
    let mut enc = enc.open_as_with(codec, opts).context("cannot open libx264")?;
    let mut stream = octx.add_stream(codec)?;
    stream.set_parameters(&enc);
    stream.set_time_base(time_base);
    stream.set_avg_frame_rate(Rational(plan.fps as i32, 1));
    octx.write_header().context("cannot write the mp4 header")?;
    let stream_tb = octx.stream(0).context("the mp4 lost its stream")?.time_base();

    let mut frame = VideoFrame::new(Pixel::YUV420P, plan.width, plan.height);
    for k in 0..plan.frames {
        plan.render(k, canvas);
        // The encoder may still hold the previous picture's buffer; never draw over it.
        let ret = unsafe { ffi::av_frame_make_writable(frame.as_mut_ptr()) };
        ensure!(ret >= 0, "cannot allocate a frame: {}", ff::Error::from(ret));
        canvas.to_yuv420(&mut frame);
        frame.set_pts(Some(i64::from(k)));
        enc.send_frame(&frame).with_context(|| format!("encoding frame {k}"))?;
        drain(&mut enc, &mut octx, time_base, stream_tb)?;
    }
    enc.send_eof()?;
    drain(&mut enc, &mut octx, time_base, stream_tb)?;
    octx.write_trailer().context("cannot finish the mp4")?;
    Ok(())
}

fn drain(
    enc: &mut ff::encoder::Video,
    octx: &mut ff::format::context::Output,
    from: Rational,
    to: Rational,
) -> Result<()> {
    let mut packet = ff::Packet::empty();
    loop {
        match enc.receive_packet(&mut packet) {
            Ok(()) => {
                packet.set_stream(0);
                packet.rescale_ts(from, to);
                packet.write_interleaved(octx).context("cannot write a packet")?;
            }
            Err(ff::Error::Eof) => return Ok(()),
            Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => return Ok(()),
            Err(e) => return Err(e).context("encoding"),
        }
    }
}
