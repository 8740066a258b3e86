//! The environment as a picture (`hdev graph`): machines in layers that follow
//! `depends_on`, grouped by host, on networks drawn as buses, each with its state in colour
//! and in words. Pure and knowing nothing else of hdev: a plain [`Description`] goes in, a
//! [`Picture`] with every box, line and text placed comes out, and is written as SVG, DOT
//! or JSON. The operation that reads the Envfile and the engines fills the description, so
//! the layout is tested without either.

pub(crate) mod dot;
mod order;
mod place;
pub(crate) mod svg;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub(crate) use place::layout;

/// What a machine is, drawn as its shape and named in its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Container,
    Vm,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Vm => "VM",
        }
    }
}

/// Whether a machine runs, as the engines say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Running,
    Stopped,
    Paused,
    Busy,
    NotCreated,
    /// No engine told: it could not be reached.
    Unknown,
}

impl State {
    pub(crate) fn text(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::Paused => "paused",
            State::Busy => "busy",
            State::NotCreated => "not created",
            State::Unknown => "unknown",
        }
    }

    fn class(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::Paused | State::Busy => "busy",
            State::NotCreated => "not-created",
            State::Unknown => "unknown",
        }
    }
}

/// Something to look at besides whether it runs; the most serious one colours the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Flag {
    /// Its health check failed when last run.
    Unhealthy,
    /// Files changed since its baseline, as the last drift check found.
    Drifted,
    /// It was created from another definition than the Envfile's now.
    Changed,
}

impl Flag {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Flag::Unhealthy => "failed health",
            Flag::Drifted => "drifted",
            Flag::Changed => "changed definition",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Flag::Unhealthy => "unhealthy",
            Flag::Drifted => "drifted",
            Flag::Changed => "changed",
        }
    }
}

/// The environment to draw: everything the picture shows, nothing it must look up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Description {
    /// The environment's name.
    pub title: String,
    /// Lines printed under the title (what could not be read, and so is not shown).
    pub notes: Vec<String>,
    pub networks: Vec<Network>,
    pub machines: Vec<Machine>,
}

#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub name: String,
    pub subnet: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub name: String,
    /// The host it is on (`local`: this machine).
    pub host: String,
    pub kind: Kind,
    pub state: State,
    pub flags: Vec<Flag>,
    /// Published ports, as written in the Envfile.
    pub ports: Vec<String>,
    /// The networks it is on, with its address there.
    pub links: Vec<Link>,
    /// Machines it waits for.
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub network: String,
    pub address: String,
}

impl Machine {
    /// Its state in words: the run state, then every flag (`running, drifted`).
    pub(crate) fn status(&self) -> String {
        let mut flags = self.flags.clone();
        flags.sort();
        flags.dedup();
        std::iter::once(self.state.text())
            .chain(flags.iter().map(|f| f.text()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The colour of its box: its most serious flag, else its run state.
    pub(crate) fn class(&self) -> &'static str {
        match self.flags.iter().min() {
            Some(f) => f.class(),
            None => self.state.class(),
        }
    }
}

/// A rectangle in picture units (pixels at 100 %), from its top left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    /// Whether the two share any area (touching edges do not count).
    #[cfg(test)]
    pub(crate) fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// One line of text; `y` is its baseline. Every text of the picture is one of these, so
/// that a test (or a tool) can see where each is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Text {
    pub x: i32,
    pub y: i32,
    pub size: i32,
    pub text: String,
    /// What it is: `title`, `note`, `host`, `name`, `line`, `address`, `busname`, `legend`, `legend-title`.
    pub class: &'static str,
}

impl Text {
    /// The box it takes in a monospace font: a character is 0.6 of the size wide.
    pub(crate) fn bbox(&self) -> Rect {
        Rect {
            x: self.x,
            y: self.y - self.size,
            w: text_width(&self.text, self.size),
            h: self.size + self.size / 5,
        }
    }
}

/// Width of `s` at `size` in a monospace font, rounded up.
pub(crate) fn text_width(s: &str, size: i32) -> i32 {
    let chars = s.chars().count() as i32;
    (chars * size * 6 + 9) / 10
}

/// The laid out picture: the layout for tools (and the JSON format), and all an output
/// format needs to draw it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Picture {
    pub title: String,
    pub width: i32,
    pub height: i32,
    pub notes: Vec<String>,
    /// Machine names in each layer, top to bottom, in drawing order.
    pub layers: Vec<Vec<String>>,
    pub hosts: Vec<Cluster>,
    pub nodes: Vec<Node>,
    pub buses: Vec<Bus>,
    pub links: Vec<LinkPath>,
    pub edges: Vec<EdgePath>,
    pub legend: Vec<LegendItem>,
    pub texts: Vec<Text>,
}

/// A host's band of the picture.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cluster {
    pub name: String,
    pub rect: Rect,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Node {
    pub name: String,
    pub kind: Kind,
    pub host: String,
    pub layer: usize,
    pub rect: Rect,
    pub state: State,
    pub flags: Vec<Flag>,
    /// The state in words, as the box shows it.
    pub status: String,
    /// The colour it is drawn in (see the legend).
    pub class: &'static str,
    pub ports: Vec<String>,
}

/// A network: a bar under each layer that has machines on it, the bars joined by a trunk.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bus {
    pub name: String,
    pub subnet: String,
    /// x1, y1, x2, y2.
    pub rails: Vec<[i32; 4]>,
    pub trunk: Option<[i32; 4]>,
}

/// A machine's line to a bus.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LinkPath {
    pub machine: String,
    pub network: String,
    pub address: String,
    pub points: Vec<[i32; 2]>,
}

/// A `depends_on` arrow, from the machine that waits to the one it waits for (downwards).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EdgePath {
    pub from: String,
    pub to: String,
    pub points: Vec<[i32; 2]>,
}

/// A sample in the legend; its words are among the texts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LegendItem {
    /// `state`, `container`, `vm`, `depends_on`, `network`.
    pub kind: &'static str,
    pub class: &'static str,
    pub label: String,
    pub rect: Rect,
}
