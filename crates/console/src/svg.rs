//! A deployment's timeline drawn as inline SVG: the new version's healthy tasks (solid
//! line), the older versions' (dashed), the window in which both answered (shaded), and the
//! timeline's marks (numbered lines, listed in the table under the picture). Readable
//! without colour: the lines differ by dash, the marks by number. No script, no inline
//! style (the console's CSP allows neither): classes, and the stylesheet.

use maud::{Markup, html};
use slipway_core::timeline::{Point, Series};

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 28.0;

struct Scale {
    start: i64,
    end: i64,
    peak: u32,
}

impl Scale {
    fn x(&self, at: i64) -> f64 {
        let width = W - LEFT - RIGHT;
        if self.end <= self.start {
            return LEFT;
        }
        let f =
            (at.clamp(self.start, self.end) - self.start) as f64 / (self.end - self.start) as f64;
        LEFT + f * width
    }

    fn y(&self, count: u32) -> f64 {
        let height = H - TOP - BOTTOM;
        let peak = self.peak.max(1) as f64;
        TOP + (1.0 - f64::from(count.min(self.peak)) / peak) * height
    }

    /// A step line through the points, held to the end of the axis.
    fn steps(&self, points: &[Point]) -> String {
        let mut d = String::new();
        for (i, p) in points.iter().enumerate() {
            let (x, y) = (self.x(p.at), self.y(p.count));
            if i == 0 {
                d.push_str(&format!("M{x:.1} {y:.1}"));
            } else {
                d.push_str(&format!(" H{x:.1} V{y:.1}"));
            }
        }
        d.push_str(&format!(" H{:.1}", self.x(self.end)));
        d
    }
}

fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// The picture of `s`.
pub(crate) fn timeline(s: &Series) -> Markup {
    let sc = Scale {
        start: s.start,
        end: s.end,
        peak: s.peak.max(1),
    };
    let length = s.end - s.start;
    let last = |v: &[Point]| v.last().map_or(0, |p| p.count);
    let desc = format!(
        "Over {}: the new version went to {} healthy tasks, the older versions to {}{}.",
        secs(length),
        last(&s.new),
        last(&s.old),
        match s.overlap {
            Some((a, b)) => format!("; both answered for {}", secs(b - a)),
            None => String::new(),
        }
    );
    html! {
        figure.timeline {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) role="img"
                aria-labelledby="tl-title tl-desc" data-start=(s.start) data-end=(s.end) data-peak=(sc.peak) {
                title #tl-title { "Healthy tasks of the new and old versions over time" }
                desc #tl-desc { (desc) }
                @if let Some((a, b)) = s.overlap {
                    rect.overlap x=(format!("{:.1}", sc.x(a))) y=(TOP) width=(format!("{:.1}", (sc.x(b) - sc.x(a)).max(1.0)))
                        height=(H - TOP - BOTTOM) data-from=(a) data-to=(b) {
                        title { "Both versions answered: " (secs(b - a)) }
                    }
                }
                // Axes and scale.
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - RIGHT) y2=(H - BOTTOM) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) {}
                text.label x=(LEFT - 6.0) y=(format!("{:.1}", sc.y(sc.peak) + 4.0)) text-anchor="end" { (sc.peak) }
                text.label x=(LEFT - 6.0) y=(format!("{:.1}", sc.y(0) + 4.0)) text-anchor="end" { "0" }
                text.label x=(LEFT) y=(H - 8.0) { "0s" }
                text.label x=(W - RIGHT) y=(H - 8.0) text-anchor="end" { (secs(length)) }
                path.old d=(sc.steps(&s.old)) data-points=(points(&s.old)) {
                    title { "Older versions' healthy tasks" }
                }
                path.new d=(sc.steps(&s.new)) data-points=(points(&s.new)) {
                    title { "New version's healthy tasks" }
                }
                @for (i, (m, label_x)) in s.marks.iter().zip(label_xs(&sc, s)).enumerate() {
                    @let x = format!("{:.1}", sc.x(m.at));
                    line class=(if m.field == "rolled_back" { "mark rollback" } else { "mark" })
                        x1=(x) y1=(TOP - 4.0) x2=(x) y2=(H - BOTTOM) data-field=(m.field) data-at=(m.at) {
                        title { (i + 1) ". " (m.label) " (" (secs(m.at - s.start)) ")" }
                    }
                    text.marknum x=(format!("{label_x:.1}")) y=(TOP - 8.0) text-anchor="middle" { (i + 1) }
                }
            }
            figcaption {
                span.key-new { "solid: new version" } " · "
                span.key-old { "dashed: older versions" } " · "
                span.key-overlap { "shaded: both answered" } " · numbers: the marks below"
            }
        }
    }
}

/// Where the marks' numbers go: over their lines, moved right just enough not to overlap
/// the previous number when marks are close together.
fn label_xs(sc: &Scale, s: &Series) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::with_capacity(s.marks.len());
    for m in &s.marks {
        let x = sc.x(m.at);
        let x = match out.last() {
            Some(prev) if x < prev + 11.0 => prev + 11.0,
            _ => x,
        };
        out.push(x);
    }
    // Numbers pushed past the right edge come back inside, keeping their order.
    let mut limit = W - 6.0;
    for x in out.iter_mut().rev() {
        *x = x.min(limit);
        limit = *x - 11.0;
    }
    out
}

/// `at:count` pairs, for machines (and the tests) to read the series off the picture.
fn points(v: &[Point]) -> String {
    v.iter()
        .map(|p| format!("{}:{}", p.at, p.count))
        .collect::<Vec<_>>()
        .join(" ")
}
