//! Coordinates: hosts are bands side by side, layers are rows top to bottom. Under each
//! row, its machines' lines drop to a bar per network (their addresses beside them, left
//! of where arrows leave), the bars of one network are joined by a trunk at the left, and
//! below the bars each arrow has a track of its own to run sideways in. Every text gets
//! room of its own by construction; the tests check it.

use std::collections::BTreeMap;

use super::order::{self, Slot};
use super::{
    text_width, Bus, Cluster, Description, EdgePath, Kind, LegendItem, LinkPath, Node, Picture,
    Rect, State, Text,
};

const MARGIN: i32 = 16;
const PAD: i32 = 10;
const NAME: i32 = 12;
const LINE_SIZE: i32 = 11;
const LINE: i32 = 16;
const SMALL: i32 = 10;
const LABEL_STEP: i32 = 13;
const RAIL_STEP: i32 = 14;
const STUB_STEP: i32 = 8;
const EXIT_STEP: i32 = 10;
const TRACK: i32 = 6;
const GAP_X: i32 = 28;
const PASS_W: i32 = 14;
const BAND_PAD: i32 = 16;
const BAND_GAP: i32 = 16;
const TRUNK_STEP: i32 = 12;
const MIN_W: i32 = 120;
const MIN_WIDTH: i32 = 600;

/// A machine's box before it is placed: its lines and size, its links (network index,
/// label, address) in the order of the networks.
struct Boxed {
    lines: Vec<(String, i32, &'static str)>,
    w: i32,
    h: i32,
    links: Vec<(usize, String, String)>,
}

/// Lays out `d`: see the module's comment.
pub(crate) fn layout(d: &Description) -> Picture {
    let g = Graph::new(d);
    let mut p = Picture {
        title: d.title.clone(),
        width: 0,
        height: 0,
        notes: d.notes.clone(),
        layers: Vec::new(),
        hosts: Vec::new(),
        nodes: Vec::new(),
        buses: Vec::new(),
        links: Vec::new(),
        edges: Vec::new(),
        legend: Vec::new(),
        texts: Vec::new(),
    };
    let top = header(&mut p, d);
    let rows = g.rows_geometry(top + 30);
    let xs = g.columns(&mut p, &rows, top);
    g.nodes(&mut p, &rows, &xs);
    g.buses(&mut p, &rows, &xs);
    g.edges(&mut p, &rows, &xs);
    let bottom = p
        .hosts
        .iter()
        .map(|h| h.rect.y + h.rect.h)
        .max()
        .unwrap_or(top);
    let right = p
        .hosts
        .iter()
        .map(|h| h.rect.x + h.rect.w)
        .max()
        .unwrap_or(0);
    let texts_right = p.texts.iter().map(|t| t.x + t.bbox().w).max().unwrap_or(0);
    p.width = (right + MARGIN).max(texts_right + MARGIN).max(MIN_WIDTH);
    p.height = legend(&mut p, bottom + 28) + MARGIN;
    p
}

/// Title and notes; returns where the host bands start.
fn header(p: &mut Picture, d: &Description) -> i32 {
    let n = d.machines.len();
    let title = format!(
        "{}: {n} machine{}, {} network{}",
        d.title,
        if n == 1 { "" } else { "s" },
        d.networks.len(),
        if d.networks.len() == 1 { "" } else { "s" }
    );
    let mut y = MARGIN + 16;
    p.texts.push(text(MARGIN, y, 16, title, "title"));
    for note in &d.notes {
        y += 18;
        p.texts
            .push(text(MARGIN, y, LINE_SIZE, note.clone(), "note"));
    }
    y + 14
}

fn text(x: i32, y: i32, size: i32, s: String, class: &'static str) -> Text {
    Text {
        x,
        y,
        size,
        text: s,
        class,
    }
}

/// The description with indices: machines, hosts, networks, arrows, and their order.
struct Graph<'a> {
    d: &'a Description,
    hosts: Vec<String>,
    host_of: Vec<usize>,
    edges: Vec<(usize, usize)>,
    ord: order::Ordered,
    boxes: Vec<Boxed>,
    /// Networks some machine is on, in the description's order: (index, label).
    nets: Vec<(usize, String)>,
}

/// Where each row is, top to bottom.
struct RowGeo {
    top: i32,
    /// Where the address labels start (the bottom of its tallest box).
    labels: i32,
    /// The y of the bar of each network (by index) under this row.
    rails: BTreeMap<usize, i32>,
    /// The y of the first arrow track under it.
    tracks: i32,
}

impl<'a> Graph<'a> {
    fn new(d: &'a Description) -> Graph<'a> {
        let mut hosts: Vec<String> = d.machines.iter().map(|m| m.host.clone()).collect();
        hosts.sort_by_key(|h| (h != "local", h.clone()));
        hosts.dedup();
        let host_of: Vec<usize> = d
            .machines
            .iter()
            .map(|m| hosts.iter().position(|h| *h == m.host).unwrap_or(0))
            .collect();
        let index: BTreeMap<&str, usize> = d
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        let mut edges: Vec<(usize, usize)> = Vec::new();
        for (i, m) in d.machines.iter().enumerate() {
            for dep in &m.depends_on {
                if let Some(&j) = index.get(dep.as_str()) {
                    if j != i && !edges.contains(&(i, j)) {
                        edges.push((i, j));
                    }
                }
            }
        }
        let names: Vec<String> = d.machines.iter().map(|m| m.name.clone()).collect();
        let ord = order::order(&host_of, &names, &edges);
        let net_index: BTreeMap<&str, usize> = d
            .networks
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let boxes: Vec<Boxed> = d
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| boxed(m, &net_index, edges.iter().filter(|e| e.0 == i).count()))
            .collect();
        let used: std::collections::BTreeSet<usize> = boxes
            .iter()
            .flat_map(|b| b.links.iter().map(|l| l.0))
            .collect();
        let nets = used
            .into_iter()
            .map(|i| {
                (
                    i,
                    format!("{} {}", d.networks[i].name, d.networks[i].subnet),
                )
            })
            .collect();
        Graph {
            d,
            hosts,
            host_of,
            edges,
            ord,
            boxes,
            nets,
        }
    }

    fn band(&self, s: Slot) -> usize {
        match s {
            Slot::Machine(m) => self.host_of[m],
            Slot::Pass { edge, .. } => self.host_of[self.edges[edge].0],
        }
    }

    fn width(&self, s: Slot) -> i32 {
        match s {
            Slot::Machine(m) => self.boxes[m].w,
            Slot::Pass { .. } => PASS_W,
        }
    }

    /// Arrows running sideways under layer `l`.
    fn tracks_under(&self, l: usize) -> usize {
        let layer = &self.ord.layer;
        self.edges
            .iter()
            .filter(|(a, b)| layer[*a] <= l && l < layer[*b])
            .count()
    }

    fn rows_geometry(&self, mut top: i32) -> Vec<RowGeo> {
        let mut out = Vec::new();
        for (l, row) in self.ord.rows.iter().enumerate() {
            let ms: Vec<usize> = row
                .iter()
                .filter_map(|s| match s {
                    Slot::Machine(m) => Some(*m),
                    Slot::Pass { .. } => None,
                })
                .collect();
            let h = ms.iter().map(|m| self.boxes[*m].h).max().unwrap_or(20);
            let most = ms.iter().map(|m| self.boxes[*m].links.len()).max();
            let lz = most.map_or(0, |n| n as i32 * LABEL_STEP + 6);
            let mut nets: Vec<usize> = ms
                .iter()
                .flat_map(|m| self.boxes[*m].links.iter().map(|l| l.0))
                .collect();
            nets.sort();
            nets.dedup();
            let first = top + h + lz + 8;
            let rails: BTreeMap<usize, i32> = nets
                .iter()
                .enumerate()
                .map(|(j, n)| (*n, first + j as i32 * RAIL_STEP))
                .collect();
            let end = rails.values().max().map_or(top + h + lz + 4, |y| y + 8);
            out.push(RowGeo {
                top,
                labels: top + h,
                rails,
                tracks: end + 8,
            });
            top = end + 8 + self.tracks_under(l) as i32 * TRACK + 16;
        }
        out.push(RowGeo {
            top,
            labels: top,
            rails: BTreeMap::new(),
            tracks: top,
        });
        out
    }

    /// x of each slot, the host bands (and their names, in the texts).
    fn columns(&self, p: &mut Picture, rows: &[RowGeo], top: i32) -> BTreeMap<SlotKey, i32> {
        let label_w = self
            .nets
            .iter()
            .map(|n| text_width(&n.1, SMALL))
            .max()
            .unwrap_or(0);
        let mut x = match self.nets.len() {
            0 => MARGIN,
            n => MARGIN + label_w + 10 + n as i32 * TRUNK_STEP + 12,
        };
        let mut xs = BTreeMap::new();
        let bottom = rows.last().map_or(top, |r| r.top - 8);
        for (h, name) in self.hosts.iter().enumerate() {
            let header = format!("host {name}");
            let rows_w: Vec<i32> = self.ord.rows.iter().map(|r| self.row_w(r, h)).collect();
            let content = rows_w.iter().copied().max().unwrap_or(0);
            let w = (content + 2 * BAND_PAD).max(text_width(&header, NAME) + 2 * BAND_PAD);
            for (row, rw) in self.ord.rows.iter().zip(&rows_w) {
                let mut sx = x + (w - rw) / 2;
                for s in row.iter().filter(|s| self.band(**s) == h) {
                    xs.insert(key(*s), sx);
                    sx += self.width(*s) + GAP_X;
                }
            }
            p.hosts.push(Cluster {
                name: name.clone(),
                rect: Rect {
                    x,
                    y: top,
                    w,
                    h: bottom - top,
                },
            });
            p.texts.push(text(x + 10, top + 18, NAME, header, "host"));
            x += w + BAND_GAP;
        }
        xs
    }

    fn row_w(&self, row: &[Slot], h: usize) -> i32 {
        let ws: Vec<i32> = row
            .iter()
            .filter(|s| self.band(**s) == h)
            .map(|s| self.width(*s))
            .collect();
        ws.iter().sum::<i32>() + GAP_X * (ws.len() as i32 - 1).max(0)
    }

    fn rect(&self, m: usize, rows: &[RowGeo], xs: &BTreeMap<SlotKey, i32>) -> Rect {
        let b = &self.boxes[m];
        Rect {
            x: xs[&key(Slot::Machine(m))],
            y: rows[self.ord.layer[m]].top,
            w: b.w,
            h: b.h,
        }
    }

    fn nodes(&self, p: &mut Picture, rows: &[RowGeo], xs: &BTreeMap<SlotKey, i32>) {
        for row in &self.ord.rows {
            let names = row.iter().filter_map(|s| match s {
                Slot::Machine(m) => Some(self.d.machines[*m].name.clone()),
                Slot::Pass { .. } => None,
            });
            p.layers.push(names.collect());
        }
        for (m, mach) in self.d.machines.iter().enumerate() {
            let r = self.rect(m, rows, xs);
            for (i, (s, size, class)) in self.boxes[m].lines.iter().enumerate() {
                let y = r.y + PAD + NAME + i as i32 * LINE;
                p.texts.push(text(r.x + PAD, y, *size, s.clone(), class));
            }
            p.nodes.push(Node {
                name: mach.name.clone(),
                kind: mach.kind,
                host: mach.host.clone(),
                layer: self.ord.layer[m],
                rect: r,
                state: mach.state,
                flags: mach.flags.clone(),
                status: mach.status(),
                class: mach.class(),
                ports: mach.ports.clone(),
            });
        }
    }

    /// Each machine's lines to the bars, with its addresses; the bars and trunks.
    fn buses(&self, p: &mut Picture, rows: &[RowGeo], xs: &BTreeMap<SlotKey, i32>) {
        let mut ends: BTreeMap<(usize, usize), i32> = BTreeMap::new();
        for (m, b) in self.boxes.iter().enumerate() {
            let r = self.rect(m, rows, xs);
            let geo = &rows[self.ord.layer[m]];
            let n = b.links.len() as i32;
            for (i, (net, label, address)) in b.links.iter().enumerate() {
                let sx = r.x + 12 + i as i32 * STUB_STEP;
                let y = geo.rails[net];
                p.links.push(LinkPath {
                    machine: self.d.machines[m].name.clone(),
                    network: self.d.networks[*net].name.clone(),
                    address: address.clone(),
                    points: vec![[sx, r.y + r.h], [sx, y]],
                });
                let ly = geo.labels + (i as i32 + 1) * LABEL_STEP;
                let lx = r.x + 12 + n * STUB_STEP;
                p.texts.push(text(lx, ly, SMALL, label.clone(), "address"));
                let end = ends.entry((self.ord.layer[m], *net)).or_insert(sx);
                *end = (*end).max(sx);
            }
        }
        let label_w = self.nets.iter().map(|n| text_width(&n.1, SMALL)).max();
        for (k, (net, label)) in self.nets.iter().enumerate() {
            let tx = MARGIN + label_w.unwrap_or(0) + 10 + k as i32 * TRUNK_STEP;
            let mut rails = Vec::new();
            for (l, geo) in rows.iter().enumerate() {
                if let (Some(y), Some(end)) = (geo.rails.get(net), ends.get(&(l, *net))) {
                    rails.push([MARGIN + label_w.unwrap_or(0) + 4, *y, *end, *y]);
                    p.texts
                        .push(text(MARGIN, y + 4, SMALL, label.clone(), "busname"));
                }
            }
            let trunk = match (rails.first(), rails.last()) {
                (Some(a), Some(b)) if rails.len() > 1 => Some([tx, a[1], tx, b[1]]),
                _ => None,
            };
            let n = &self.d.networks[*net];
            p.buses.push(Bus {
                name: n.name.clone(),
                subnet: n.subnet.clone(),
                rails,
                trunk,
            });
        }
    }

    /// x where slot `s` is met by arrows: a box's exit or entry, a pass's middle.
    fn edges(&self, p: &mut Picture, rows: &[RowGeo], xs: &BTreeMap<SlotKey, i32>) {
        let chain = |e: usize| -> Vec<Slot> {
            let (a, b) = self.edges[e];
            let mut v = vec![Slot::Machine(a)];
            let passes = (self.ord.layer[a] + 1..self.ord.layer[b])
                .map(|l| Slot::Pass { edge: e, layer: l });
            v.extend(passes);
            v.push(Slot::Machine(b));
            v
        };
        let centre = |s: Slot| xs[&key(s)] + self.width(s) / 2;
        // Exits and entries, ordered by where the arrow goes to or comes from.
        let mut exit: BTreeMap<usize, i32> = BTreeMap::new();
        let mut entry: BTreeMap<usize, i32> = BTreeMap::new();
        for m in 0..self.d.machines.len() {
            let r = self.rect(m, rows, xs);
            let mut outs: Vec<usize> = (0..self.edges.len())
                .filter(|e| self.edges[*e].0 == m)
                .collect();
            outs.sort_by_key(|e| (centre(chain(*e)[1]), *e));
            let n = outs.len() as i32;
            for (k, e) in outs.iter().enumerate() {
                exit.insert(*e, r.x + r.w - 12 - (n - 1 - k as i32) * EXIT_STEP);
            }
            let mut ins: Vec<usize> = (0..self.edges.len())
                .filter(|e| self.edges[*e].1 == m)
                .collect();
            ins.sort_by_key(|e| {
                let c = chain(*e);
                (centre(c[c.len() - 2]), *e)
            });
            let n = ins.len() as i32;
            for (k, e) in ins.iter().enumerate() {
                entry.insert(*e, r.x + (k as i32 + 1) * r.w / (n + 1));
            }
        }
        let tracks = self.assign_tracks(&chain, &exit, &entry, &centre);
        for (e, &(a, b)) in self.edges.iter().enumerate() {
            let ra = self.rect(a, rows, xs);
            let rb = self.rect(b, rows, xs);
            let c = chain(e);
            let mut x = exit[&e];
            let mut pts = vec![[x, ra.y + ra.h]];
            for (i, s) in c.iter().enumerate().skip(1) {
                let l = self.ord.layer[a] + i - 1;
                let ty = rows[l].tracks + tracks[&(l, e)] * TRACK;
                let nx = if i == c.len() - 1 {
                    entry[&e]
                } else {
                    centre(*s)
                };
                pts.push([x, ty]);
                if nx != x {
                    pts.push([nx, ty]);
                }
                x = nx;
            }
            pts.push([x, rb.y]);
            p.edges.push(EdgePath {
                from: self.d.machines[a].name.clone(),
                to: self.d.machines[b].name.clone(),
                points: pts,
            });
        }
    }

    /// A track of its own for each arrow under each layer it leaves, left to right.
    fn assign_tracks(
        &self,
        chain: &dyn Fn(usize) -> Vec<Slot>,
        exit: &BTreeMap<usize, i32>,
        entry: &BTreeMap<usize, i32>,
        centre: &dyn Fn(Slot) -> i32,
    ) -> BTreeMap<(usize, usize), i32> {
        // Under each layer: (from x, to x) and arrow of each sideways run.
        type Runs = Vec<((i32, i32), usize)>;
        let mut under: BTreeMap<usize, Runs> = BTreeMap::new();
        for (e, &(a, _)) in self.edges.iter().enumerate() {
            let c = chain(e);
            for i in 1..c.len() {
                let from = if i == 1 { exit[&e] } else { centre(c[i - 1]) };
                let to = if i == c.len() - 1 {
                    entry[&e]
                } else {
                    centre(c[i])
                };
                let l = self.ord.layer[a] + i - 1;
                under.entry(l).or_default().push(((from, to), e));
            }
        }
        let mut out = BTreeMap::new();
        for (l, mut segs) in under {
            segs.sort();
            for (t, (_, e)) in segs.iter().enumerate() {
                out.insert((l, *e), t as i32);
            }
        }
        out
    }
}

/// A slot as a map key.
type SlotKey = (usize, usize, usize);

fn key(s: Slot) -> SlotKey {
    match s {
        Slot::Machine(m) => (0, m, 0),
        Slot::Pass { edge, layer } => (1, edge, layer),
    }
}

/// A machine's box: its lines, and a width that holds them, its address labels beside
/// its lines to the bars, and the exits of its arrows right of those.
fn boxed(m: &super::Machine, nets: &BTreeMap<&str, usize>, outs: usize) -> Boxed {
    let mut lines = vec![
        (m.name.clone(), NAME, "name"),
        (m.kind.label().to_string(), LINE_SIZE, "line"),
        (m.status(), LINE_SIZE, "line"),
    ];
    lines.extend(
        m.ports
            .iter()
            .map(|p| (format!("port {p}"), LINE_SIZE, "line")),
    );
    let mut links: Vec<(usize, String, String)> = m
        .links
        .iter()
        .filter_map(|l| {
            let i = *nets.get(l.network.as_str())?;
            Some((i, format!("{} {}", l.network, l.address), l.address.clone()))
        })
        .collect();
    links.sort();
    let text_w = lines.iter().map(|(s, size, _)| text_width(s, *size)).max();
    let label_w = links.iter().map(|l| text_width(&l.1, SMALL)).max();
    let n = links.len() as i32;
    let below = 12 + n * STUB_STEP + label_w.unwrap_or(0) + 6;
    let arrows = match outs as i32 {
        0 => 0,
        k => 12 + (k - 1) * EXIT_STEP + 6,
    };
    let h = PAD + NAME + (lines.len() as i32 - 1) * LINE + PAD;
    Boxed {
        w: (text_w.unwrap_or(0) + 2 * PAD)
            .max(below + arrows)
            .max(MIN_W),
        h,
        lines,
        links,
    }
}

/// The legend, in rows as wide as the picture; returns its bottom.
fn legend(p: &mut Picture, top: i32) -> i32 {
    let states = [
        (State::Running.text(), "running"),
        (State::Stopped.text(), "stopped"),
        ("paused or busy", "busy"),
        (State::NotCreated.text(), "not-created"),
        (State::Unknown.text(), "unknown"),
        (super::Flag::Changed.text(), "changed"),
        (super::Flag::Drifted.text(), "drifted"),
        (super::Flag::Unhealthy.text(), "unhealthy"),
    ];
    let mut items: Vec<(&'static str, &'static str, String)> = states
        .iter()
        .map(|(t, c)| ("state", *c, t.to_string()))
        .collect();
    items.push(("container", "shape", Kind::Container.label().to_string()));
    items.push((
        "vm",
        "shape",
        format!("{} (double border)", Kind::Vm.label()),
    ));
    items.push(("depends_on", "dep", "waits for (depends_on)".to_string()));
    items.push(("network", "bus", "network, address".to_string()));
    p.texts.push(text(
        MARGIN,
        top,
        NAME,
        "legend".to_string(),
        "legend-title",
    ));
    let cell = items
        .iter()
        .map(|i| text_width(&i.2, LINE_SIZE))
        .max()
        .unwrap_or(0)
        + 30
        + 24;
    let cols = ((p.width - 2 * MARGIN + 24) / cell).max(1) as usize;
    let mut bottom = top;
    for (i, (kind, class, label)) in items.into_iter().enumerate() {
        let x = MARGIN + (i % cols) as i32 * cell;
        let y = top + 12 + (i / cols) as i32 * 22;
        let rect = Rect { x, y, w: 24, h: 14 };
        p.texts
            .push(text(x + 30, y + 11, LINE_SIZE, label.clone(), "legend"));
        p.legend.push(LegendItem {
            kind,
            class,
            label,
            rect,
        });
        bottom = y + 14;
    }
    bottom
}
