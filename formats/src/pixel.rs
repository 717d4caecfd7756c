//! Pixel formats and the geometry of stored frames (`FORMAT.md#31-frames`), and the
//! conversion of a `yuv420p` frame to RGB that cvrl's tools use.
//!
//! [`FrameLayout`] is validated once (size bounds, even `yuv420p` sizes) so that every
//! size computation after it is plain arithmetic.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How the pixels of a stored frame are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Planar Y, U, V with 2x2 chroma subsampling (limited range, as decoded).
    Yuv420p,
    /// Packed R, G, B, one byte each.
    Rgb24,
}

impl PixelFormat {
    /// The on-disk code of this format (`FORMAT.md#3-video-record`).
    pub fn code(self) -> u8 {
        match self {
            PixelFormat::Yuv420p => 1,
            PixelFormat::Rgb24 => 2,
        }
    }

    /// Inverse of [`PixelFormat::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(PixelFormat::Yuv420p),
            2 => Some(PixelFormat::Rgb24),
            _ => None,
        }
    }

    /// The name used in the index, the manifest and on the command line (FFmpeg's names).
    pub fn as_str(self) -> &'static str {
        match self {
            PixelFormat::Yuv420p => "yuv420p",
            PixelFormat::Rgb24 => "rgb24",
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "yuv420p" => Ok(PixelFormat::Yuv420p),
            "rgb24" => Ok(PixelFormat::Rgb24),
            other => Err(format!("unknown pixel format {other:?} (expected yuv420p or rgb24)")),
        }
    }
}

/// One plane of a frame: `width` bytes per row, `height` rows, packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
}

impl Plane {
    pub fn len(&self) -> usize {
        self.width * self.height
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Validated geometry of the frames of one video. Construct with [`FrameLayout::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    width: u32,
    height: u32,
    format: PixelFormat,
}

/// Largest width or height accepted (8K); bounds every size computation.
pub const MAX_DIMENSION: u32 = 8192;

impl FrameLayout {
    /// Checks that the size is non-zero, at most [`MAX_DIMENSION`], and even for `yuv420p`.
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Result<Self, String> {
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(format!("frame size {width}x{height} outside 1..={MAX_DIMENSION}"));
        }
        if format == PixelFormat::Yuv420p && (!width.is_multiple_of(2) || !height.is_multiple_of(2))
        {
            return Err(format!("yuv420p frame size {width}x{height} must be even"));
        }
        Ok(FrameLayout { width, height, format })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The planes of one frame, in storage order.
    pub fn planes(&self) -> Vec<Plane> {
        let (w, h) = (self.width as usize, self.height as usize);
        match self.format {
            PixelFormat::Yuv420p => {
                let c = Plane { width: w / 2, height: h / 2 };
                vec![Plane { width: w, height: h }, c, c]
            }
            PixelFormat::Rgb24 => vec![Plane { width: 3 * w, height: h }],
        }
    }

    /// Bytes of one stored frame.
    pub fn frame_bytes(&self) -> usize {
        self.planes().iter().map(Plane::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv420p_frame_is_one_and_a_half_bytes_per_pixel() {
        let l = FrameLayout::new(342, 256, PixelFormat::Yuv420p).unwrap();
        assert_eq!(l.frame_bytes(), 342 * 256 * 3 / 2);
        assert_eq!(l.planes()[1], Plane { width: 171, height: 128 });
    }

    #[test]
    fn odd_yuv_sizes_and_zero_sizes_are_rejected() {
        assert!(FrameLayout::new(341, 256, PixelFormat::Yuv420p).is_err());
        assert!(FrameLayout::new(341, 256, PixelFormat::Rgb24).is_ok());
        assert!(FrameLayout::new(0, 256, PixelFormat::Rgb24).is_err());
        assert!(FrameLayout::new(9000, 256, PixelFormat::Rgb24).is_err());
    }

    #[test]
    fn names_round_trip() {
        for f in [PixelFormat::Yuv420p, PixelFormat::Rgb24] {
            assert_eq!(f.as_str().parse::<PixelFormat>().unwrap(), f);
            assert_eq!(PixelFormat::from_code(f.code()), Some(f));
        }
    }
}

/// Converts one `yuv420p` frame (BT.601, limited range: what H.264 Kinetics videos decode
/// to) to packed `rgb24`, writing `width * height * 3` bytes into `rgb`. Fixed-point with
/// 16 fractional bits, so results match the float formula to within one level.
pub fn yuv420p_to_rgb24(layout: &FrameLayout, yuv: &[u8], rgb: &mut [u8]) {
    let (w, h) = (layout.width() as usize, layout.height() as usize);
    let (y_plane, rest) = yuv.split_at(w * h);
    let (u_plane, v_plane) = rest.split_at(w * h / 4);
    for row in 0..h {
        let ys = &y_plane[row * w..(row + 1) * w];
        let us = &u_plane[(row / 2) * (w / 2)..(row / 2 + 1) * (w / 2)];
        let vs = &v_plane[(row / 2) * (w / 2)..(row / 2 + 1) * (w / 2)];
        let out = &mut rgb[row * w * 3..(row + 1) * w * 3];
        for (x, px) in out.chunks_exact_mut(3).enumerate() {
            let c = (i32::from(ys[x]) - 16) * 76309; // 255/219 in 16.16
            let d = i32::from(us[x / 2]) - 128;
            let e = i32::from(vs[x / 2]) - 128;
            let clamp = |v: i32| ((v + 32768) >> 16).clamp(0, 255) as u8;
            px[0] = clamp(c + 104597 * e); // 1.596
            px[1] = clamp(c - 25675 * d - 53279 * e); // 0.392, 0.813
            px[2] = clamp(c + 132201 * d); // 2.017
        }
    }
}

#[cfg(test)]
mod convert_tests {
    use super::*;

    #[test]
    fn limited_range_grey_white_and_red_convert_to_rgb() {
        let l = FrameLayout::new(2, 2, PixelFormat::Yuv420p).unwrap();
        let mut rgb = [0u8; 12];
        yuv420p_to_rgb24(&l, &[16, 16, 16, 16, 128, 128], &mut rgb);
        assert_eq!(rgb, [0; 12]);
        yuv420p_to_rgb24(&l, &[235, 235, 235, 235, 128, 128], &mut rgb);
        assert_eq!(rgb, [255; 12]);
        // BT.601 limited-range pure red is Y=81, U=90, V=240.
        yuv420p_to_rgb24(&l, &[81, 81, 81, 81, 90, 240], &mut rgb);
        assert!(rgb[0] >= 253 && rgb[1] <= 2 && rgb[2] <= 2, "{rgb:?}");
    }
}
