//! Pictures, from the decoder's frame to the stored bytes: the quarter turn that shows a
//! stream upright, the stored size, swscale's bicubic scaling, and packing the planes
//! without row padding into the layout of FORMAT.md. The geometry rules are in the module
//! documentation of [`crate::decode`].

use std::ops::Range;
use std::os::raw::c_int;

use cvrl_formats::{FrameLayout, PixelFormat};
use ff::ffi;
use ff::format::Pixel;
use ff::frame::Video as VideoFrame;
use ff::software::scaling;
use ffmpeg_next as ff;

use super::{DecodeError, DecodeOptions, Stage};

/// Quarter turns (clockwise) that show a stream's pictures upright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rotation {
    None,
    Cw90,
    Cw180,
    Cw270,
}

impl Rotation {
    pub(super) fn degrees(self) -> i32 {
        match self {
            Rotation::None => 0,
            Rotation::Cw90 => 90,
            Rotation::Cw180 => 180,
            Rotation::Cw270 => 270,
        }
    }

    fn swaps_sides(self) -> bool {
        matches!(self, Rotation::Cw90 | Rotation::Cw270)
    }

    /// From `av_display_rotation_get` (counter-clockwise degrees), as the CLI does:
    /// theta = -angle, wrapped into [0, 360), then the nearest quarter turn.
    fn from_display_angle(ccw: f64) -> Self {
        if !ccw.is_finite() {
            return Rotation::None;
        }
        let theta = (-ccw.round()).rem_euclid(360.0);
        match ((theta / 90.0).round() as i64).rem_euclid(4) {
            1 => Rotation::Cw90,
            2 => Rotation::Cw180,
            3 => Rotation::Cw270,
            _ => Rotation::None,
        }
    }
}

/// Reads the stream's display matrix (mp4 `tkhd`, or the legacy `rotate` tag).
pub(super) fn quarter_turns(stream: &ff::Stream<'_>) -> Rotation {
    for side in stream.side_data() {
        if side.kind() != ff::codec::packet::side_data::Type::DisplayMatrix {
            continue;
        }
        let data = side.data();
        if data.len() < 36 {
            continue;
        }
        let mut matrix = [0i32; 9];
        for (m, b) in matrix.iter_mut().zip(data.chunks_exact(4)) {
            *m = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        }
        // SAFETY: reads exactly the nine i32 of our own aligned array.
        let ccw = unsafe { ffi::av_display_rotation_get(matrix.as_ptr()) };
        return Rotation::from_display_angle(ccw);
    }
    Rotation::None
}

/// Output geometry, fixed by the first decoded picture.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    layout: FrameLayout,
    format: Pixel,
}

/// Stored size for a picture shown as `shown_w x shown_h` (see the module doc).
fn output_size(shown: (u32, u32), short_side: Option<u32>, format: PixelFormat) -> (u32, u32) {
    let even = format == PixelFormat::Yuv420p;
    let (w, h) = shown;
    match short_side {
        None if even => (w & !1, h & !1),
        None => (w, h),
        Some(s) => {
            let round = |x: f64| {
                if even {
                    ((x / 2.0).round() * 2.0).max(2.0) as u32
                } else {
                    x.round().max(1.0) as u32
                }
            };
            let (short, long) = (w.min(h) as f64, w.max(h) as f64);
            let long = round(long * f64::from(s) / short.max(1.0));
            let short = round(f64::from(s));
            if w <= h {
                (short, long)
            } else {
                (long, short)
            }
        }
    }
}

/// A swscale context and the source it was made for (format, width, height).
type Scaler = Option<(scaling::Context, (Pixel, u32, u32))>;

/// Turns decoded pictures into packed output frames and hands them to the callback.
/// Every buffer here is allocated for the first frame and reused for the rest.
pub(super) struct Sink<F> {
    short_side: Option<u32>,
    format: PixelFormat,
    rotation: Rotation,
    callback: F,
    geometry: Option<Geometry>,
    /// Source format to 4:4:4, for turning pictures that are not 4:2:0.
    widen: Scaler,
    widened: VideoFrame,
    /// The picture turned upright, before scaling.
    turned: VideoFrame,
    scaler: Scaler,
    scaled: VideoFrame,
    /// The packed output frame.
    buf: Vec<u8>,
    /// Whether `buf` holds the currently held frame already (repeated output slots).
    converted: bool,
    pub(super) emitted: u32,
}

impl<F: FnMut(&FrameLayout, &[u8]) -> anyhow::Result<()>> Sink<F> {
    pub(super) fn new(opts: &DecodeOptions, rotation: Rotation, callback: F) -> Self {
        Sink {
            short_side: opts.short_side,
            format: opts.pixel_format,
            rotation,
            callback,
            geometry: None,
            widen: None,
            widened: VideoFrame::empty(),
            turned: VideoFrame::empty(),
            scaler: None,
            scaled: VideoFrame::empty(),
            buf: Vec::new(),
            converted: false,
            emitted: 0,
        }
    }

    pub(super) fn layout(&self) -> Option<FrameLayout> {
        (self.emitted > 0).then(|| self.geometry.map(|g| g.layout)).flatten()
    }

    pub(super) fn new_frame(&mut self) {
        self.converted = false;
    }

    /// Hands `frame` to the callback once per slot.
    pub(super) fn emit(
        &mut self,
        frame: &VideoFrame,
        slots: Range<u64>,
    ) -> Result<(), DecodeError> {
        for _ in slots {
            if !self.converted {
                self.convert(frame)?;
                self.converted = true;
            }
            let layout = self.geometry.expect("set by convert").layout;
            (self.callback)(&layout, &self.buf).map_err(|e| {
                DecodeError::new(Stage::Decode, format!("frame callback failed: {e:#}"))
            })?;
            self.emitted += 1;
        }
        Ok(())
    }

    fn geometry(&mut self, frame: &VideoFrame) -> Result<Geometry, DecodeError> {
        if let Some(g) = self.geometry {
            return Ok(g);
        }
        let (fw, fh) = (frame.width(), frame.height());
        let shown = if self.rotation.swaps_sides() { (fh, fw) } else { (fw, fh) };
        let (w, h) = output_size(shown, self.short_side, self.format);
        let layout = FrameLayout::new(w, h, self.format).map_err(|e| {
            DecodeError::new(Stage::Scale, format!("cannot store {fw}x{fh} pictures: {e}"))
        })?;
        let format = match self.format {
            PixelFormat::Yuv420p => Pixel::YUV420P,
            PixelFormat::Rgb24 => Pixel::RGB24,
        };
        let g = Geometry { layout, format };
        self.buf = vec![0; layout.frame_bytes()];
        self.geometry = Some(g);
        Ok(g)
    }

    /// Turns, scales (or crops) `frame` and packs it into `buf`.
    fn convert(&mut self, frame: &VideoFrame) -> Result<(), DecodeError> {
        let g = self.geometry(frame)?;
        let Sink { short_side, rotation, widen, widened, turned, scaler, scaled, buf, .. } = self;
        // Turn first, as the CLI does: turning 4:2:0 is exact, and scaling the upright
        // picture puts rounding and chroma interpolation where the CLI puts them.
        let src = if *rotation == Rotation::None {
            frame
        } else {
            turn(frame, *rotation, widen, widened, turned)?;
            &*turned
        };
        let (fw, fh) = (src.width(), src.height());
        let (ow, oh) = (g.layout.width(), g.layout.height());
        // Without a target size, an odd side loses its last row or column (module doc).
        let crop = short_side.is_none() && fw >= ow && fh >= oh && fw - ow <= 1 && fh - oh <= 1;
        let (cw, ch) = if crop { (ow, oh) } else { (fw, fh) };
        if src.format() == g.format && (cw, ch) == (ow, oh) && positive_strides(src) {
            pack(src, g, buf);
            return Ok(());
        }
        scale(src, (cw, ch), g.format, (ow, oh), scaler, scaled)?;
        pack(scaled, g, buf);
        Ok(())
    }
}

fn positive_strides(frame: &VideoFrame) -> bool {
    // SAFETY: linesize is plain data of a frame the decoder or we filled.
    unsafe { (*frame.as_ptr()).linesize.iter().all(|&l| l >= 0) }
}

/// Scales the top-left `crop` pixels of `src` into `dst` (made `format`, `size` once),
/// with a bicubic swscale context kept in `scaler` while the source stays the same.
fn scale(
    src: &VideoFrame,
    crop: (u32, u32),
    format: Pixel,
    size: (u32, u32),
    scaler: &mut Scaler,
    dst: &mut VideoFrame,
) -> Result<(), DecodeError> {
    let (cw, ch) = crop;
    let (w, h) = size;
    let key = (src.format(), cw, ch);
    if scaler.as_ref().is_none_or(|(_, k)| *k != key) {
        let ctx = scaling::Context::get(key.0, cw, ch, format, w, h, scaling::Flags::BICUBIC)
            .map_err(|_| {
                DecodeError::new(
                    Stage::Scale,
                    format!(
                        "swscale cannot convert {:?} {cw}x{ch} pictures to {format:?} {w}x{h}",
                        key.0
                    ),
                )
            })?;
        *scaler = Some((ctx, key));
    }
    if dst.width() != w || dst.height() != h || dst.format() != format {
        *dst = VideoFrame::new(format, w, h);
        // SAFETY: reading the data pointer of a frame we own.
        if unsafe { (*dst.as_ptr()).data[0].is_null() } {
            return Err(DecodeError::new(Stage::Scale, format!("cannot allocate a {w}x{h} frame")));
        }
    }
    let (ctx, _) = scaler.as_mut().expect("created above");
    // SAFETY: the context was made for this source format and the cropped size, which is at
    // most the frame's size, and `dst` was allocated with the context's output format and
    // size; sws_scale reads `ch` rows through the source frame's own strides.
    let rows = unsafe {
        let s = src.as_ptr();
        let d = dst.as_mut_ptr();
        ffi::sws_scale(
            ctx.as_mut_ptr(),
            (*s).data.as_ptr() as *const *const u8,
            (*s).linesize.as_ptr(),
            0,
            ch as c_int,
            (*d).data.as_ptr(),
            (*d).linesize.as_ptr(),
        )
    };
    if rows != h as c_int {
        return Err(DecodeError::new(Stage::Scale, format!("swscale produced {rows} of {h} rows")));
    }
    Ok(())
}

/// Turns `frame` by `rotation` into `turned`, keeping its 4:2:0 format (the transpose,
/// hflip and vflip the CLI inserts). Other formats are widened to 4:4:4 first, so that
/// every plane turns the same way.
fn turn(
    frame: &VideoFrame,
    rotation: Rotation,
    widen: &mut Scaler,
    widened: &mut VideoFrame,
    turned: &mut VideoFrame,
) -> Result<(), DecodeError> {
    let src =
        if matches!(frame.format(), Pixel::YUV420P | Pixel::YUVJ420P) && positive_strides(frame) {
            frame
        } else {
            let size = (frame.width(), frame.height());
            scale(frame, size, Pixel::YUV444P, size, widen, widened)?;
            &*widened
        };
    let (w, h) = (src.width(), src.height());
    let (tw, th) = if rotation.swaps_sides() { (h, w) } else { (w, h) };
    if turned.width() != tw || turned.height() != th || turned.format() != src.format() {
        *turned = VideoFrame::new(src.format(), tw, th);
        // SAFETY: reading the data pointer of a frame we own.
        if unsafe { (*turned.as_ptr()).data[0].is_null() } {
            return Err(DecodeError::new(
                Stage::Scale,
                format!("cannot allocate a {tw}x{th} frame"),
            ));
        }
    }
    for i in 0..3 {
        let size = (src.plane_width(i) as usize, src.plane_height(i) as usize);
        let stride = turned.stride(i);
        copy_plane(src.data(i), src.stride(i), size, 1, rotation, turned.data_mut(i), stride);
    }
    Ok(())
}

/// Copies the planes of `frame` (its top-left `g.layout` pixels, through its strides) into
/// `out`, packed.
fn pack(frame: &VideoFrame, g: Geometry, out: &mut [u8]) {
    let mut offset = 0;
    for (i, plane) in g.layout.planes().iter().enumerate() {
        let len = plane.len();
        let bpp = if g.layout.format() == PixelFormat::Rgb24 { 3 } else { 1 };
        let size = (plane.width / bpp, plane.height);
        let dst = &mut out[offset..offset + len];
        copy_plane(frame.data(i), frame.stride(i), size, bpp, Rotation::None, dst, plane.width);
        offset += len;
    }
}

/// One plane: `w x h` pixels of `bpp` bytes, rows `stride` apart in `src`, turned by
/// `rotation` into `dst` with rows `dst_stride` apart.
fn copy_plane(
    src: &[u8],
    stride: usize,
    (w, h): (usize, usize),
    bpp: usize,
    rotation: Rotation,
    dst: &mut [u8],
    dst_stride: usize,
) {
    let (out_w, out_h) = if rotation.swaps_sides() { (h, w) } else { (w, h) };
    for y in 0..out_h {
        let d = &mut dst[y * dst_stride..y * dst_stride + out_w * bpp];
        match rotation {
            Rotation::None => d.copy_from_slice(&src[y * stride..y * stride + w * bpp]),
            Rotation::Cw180 => {
                let s = &src[(h - 1 - y) * stride..];
                for (x, px) in d.chunks_exact_mut(bpp).enumerate() {
                    let at = (w - 1 - x) * bpp;
                    px.copy_from_slice(&s[at..at + bpp]);
                }
            }
            // Clockwise, the output's first row is the input's first column read bottom
            // to top: out(x, y) = in(y, h - 1 - x). Counter-clockwise is the mirror image.
            Rotation::Cw90 | Rotation::Cw270 => {
                for (x, px) in d.chunks_exact_mut(bpp).enumerate() {
                    let (sx, sy) =
                        if rotation == Rotation::Cw90 { (y, h - 1 - x) } else { (w - 1 - y, x) };
                    let at = sy * stride + sx * bpp;
                    px.copy_from_slice(&src[at..at + bpp]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_follows_the_cli_reading_of_the_display_matrix() {
        assert_eq!(Rotation::from_display_angle(90.0), Rotation::Cw270);
        assert_eq!(Rotation::from_display_angle(-90.0), Rotation::Cw90);
        assert_eq!(Rotation::from_display_angle(180.0), Rotation::Cw180);
        assert_eq!(Rotation::from_display_angle(-180.0), Rotation::Cw180);
        assert_eq!(Rotation::from_display_angle(0.0), Rotation::None);
        assert_eq!(Rotation::from_display_angle(-89.6), Rotation::Cw90);
        assert_eq!(Rotation::from_display_angle(f64::NAN), Rotation::None);
    }

    #[test]
    fn turning_a_plane_moves_pixels_where_a_player_shows_them() {
        // 3x2 plane with 4 bytes of row padding:  a b c
        //                                          d e f
        let src = b"abc....def....";
        let turned = |r| {
            let mut d = vec![0; 6];
            let stride = if r == Rotation::Cw90 || r == Rotation::Cw270 { 2 } else { 3 };
            copy_plane(src, 7, (3, 2), 1, r, &mut d, stride);
            String::from_utf8(d).unwrap()
        };
        assert_eq!(turned(Rotation::None), "abcdef");
        assert_eq!(turned(Rotation::Cw90), "daebfc");
        assert_eq!(turned(Rotation::Cw180), "fedcba");
        assert_eq!(turned(Rotation::Cw270), "cfbead");
    }

    #[test]
    fn output_size_rounds_the_long_side_and_keeps_yuv_even() {
        use PixelFormat::{Rgb24, Yuv420p};
        assert_eq!(output_size((640, 360), Some(256), Yuv420p), (456, 256));
        assert_eq!(output_size((640, 360), Some(256), Rgb24), (455, 256));
        assert_eq!(output_size((360, 640), Some(256), Yuv420p), (256, 456));
        assert_eq!(output_size((161, 97), None, Yuv420p), (160, 96));
        assert_eq!(output_size((161, 97), None, Rgb24), (161, 97));
        assert_eq!(output_size((100, 100), Some(255), Yuv420p), (256, 256));
    }
}
