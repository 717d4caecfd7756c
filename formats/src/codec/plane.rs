//! Plane geometry as the codec sees it: bytes per row, rows, channel stride and block grid
//! (`FORMAT.md#321-payload-layout`).

use crate::pixel::{FrameLayout, PixelFormat};

/// One plane as the codec sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    /// Byte offset of the plane in a frame.
    pub(super) off: usize,
    /// Bytes per row.
    pub(super) w: usize,
    pub(super) h: usize,
    /// Bytes between horizontally adjacent pixels of one channel.
    pub(super) s: usize,
    /// Block width in bytes and height in rows.
    pub(super) bw: usize,
    pub(super) bh: usize,
    pub(super) nbx: usize,
    pub(super) nby: usize,
}

impl Geom {
    pub(super) fn len(&self) -> usize {
        self.w * self.h
    }
    pub(super) fn blocks(&self) -> usize {
        self.nbx * self.nby
    }
}

/// The planes of `layout` in storage order, with their offsets in a frame.
pub(super) fn geoms(layout: &FrameLayout) -> Vec<Geom> {
    let s = match layout.format() {
        PixelFormat::Yuv420p => 1,
        PixelFormat::Rgb24 => 3,
    };
    let mut off = 0;
    layout
        .planes()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // Blocks cover the same picture area in every plane: chroma is half size.
            let px = if layout.format() == PixelFormat::Yuv420p && i > 0 { 8 } else { 16 };
            let (bw, bh) = (px * s, px);
            let g = Geom {
                off,
                w: p.width,
                h: p.height,
                s,
                bw,
                bh,
                nbx: p.width.div_ceil(bw),
                nby: p.height.div_ceil(bh),
            };
            off += p.len();
            g
        })
        .collect()
}
