//! The font of the PNG plots (soak, benchmarks), for `#[path]` inclusion.
use plotters::style::FontStyle;

/// Plotters draws text with a font given to it: DejaVu Sans from Debian's `fonts-dejavu-core`.
pub fn register_font() -> Result<(), String> {
    const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let bytes =
        std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (install fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| format!("{FONT} is not a font plotters can read"))
}
