//! The layers and the order within each (the first two steps of a Sugiyama layout): a
//! machine is one layer below the lowest machine that waits for it (longest path from the
//! top), an arrow that spans several layers passes through a placeholder in each layer
//! between, and a few barycenter sweeps order each layer (hosts kept together) so that
//! arrows cross little.

/// A place in a layer: a machine, or where arrow `edge` passes through `layer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Machine(usize),
    Pass { edge: usize, layer: usize },
}

/// The layered, ordered graph.
#[derive(Debug)]
pub(super) struct Ordered {
    /// Each machine's layer.
    pub layer: Vec<usize>,
    /// The slots of each layer, left to right.
    pub rows: Vec<Vec<Slot>>,
}

/// Longest-path layering: `edges` are (waiting machine, machine waited for); the one
/// waited for goes at least one layer lower. Machines no one waits for are on top.
pub(super) fn layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut layer = vec![0; n];
    // Each pass settles at least one more machine of a longest path; the Envfile has no
    // cycle, and the bound keeps a cycle from looping.
    for _ in 0..=n {
        let mut changed = false;
        for &(a, b) in edges {
            if layer[b] < layer[a] + 1 {
                layer[b] = layer[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

/// Layers and orders the machines: `host[m]` is machine `m`'s band (its index in the
/// order of bands), `names` break ties so the same input gives the same order.
pub(super) fn order(host: &[usize], names: &[String], edges: &[(usize, usize)]) -> Ordered {
    let layer = layers(host.len(), edges);
    let depth = layer.iter().max().map_or(0, |l| l + 1);
    let mut rows: Vec<Vec<Slot>> = vec![Vec::new(); depth];
    let mut m_order: Vec<usize> = (0..host.len()).collect();
    m_order.sort_by(|a, b| (host[*a], &names[*a]).cmp(&(host[*b], &names[*b])));
    for m in m_order {
        rows[layer[m]].push(Slot::Machine(m));
    }
    for (e, &(a, b)) in edges.iter().enumerate() {
        let between = layer[a] + 1..layer[b];
        for (l, row) in rows
            .iter_mut()
            .enumerate()
            .filter(|(l, _)| between.contains(l))
        {
            row.push(Slot::Pass { edge: e, layer: l });
        }
    }
    let band = |s: &Slot| match *s {
        Slot::Machine(m) => host[m],
        Slot::Pass { edge, .. } => host[edges[edge].0],
    };
    for row in &mut rows {
        row.sort_by_key(&band);
    }
    let links = slot_links(&layer, edges);
    sweep(&mut rows, &links, &band);
    Ordered { layer, rows }
}

/// The segments between consecutive layers: (upper slot, lower slot).
fn slot_links(layer: &[usize], edges: &[(usize, usize)]) -> Vec<(Slot, Slot)> {
    let mut out = Vec::new();
    for (e, &(a, b)) in edges.iter().enumerate() {
        let mut prev = Slot::Machine(a);
        for l in layer[a] + 1..layer[b] {
            let here = Slot::Pass { edge: e, layer: l };
            out.push((prev, here));
            prev = here;
        }
        out.push((prev, Slot::Machine(b)));
    }
    out
}

fn position(rows: &[Vec<Slot>], s: Slot) -> usize {
    rows.iter()
        .find_map(|r| r.iter().position(|x| *x == s))
        .unwrap_or(0)
}

/// Arrows that cross between consecutive layers, counted pair by pair.
pub(super) fn crossings(rows: &[Vec<Slot>], links: &[(Slot, Slot)]) -> usize {
    let p: Vec<(usize, usize)> = links
        .iter()
        .map(|(a, b)| (position(rows, *a), position(rows, *b)))
        .collect();
    let level = |s: &Slot| rows.iter().position(|r| r.contains(s));
    let mut n = 0;
    for i in 0..links.len() {
        for j in i + 1..links.len() {
            let same = level(&links[i].0) == level(&links[j].0);
            let (a, b) = (p[i], p[j]);
            if same && (a.0 as i64 - b.0 as i64) * (a.1 as i64 - b.1 as i64) < 0 {
                n += 1;
            }
        }
    }
    n
}

/// Barycenter sweeps down and up; keeps the order with the fewest crossings (the first
/// found on a tie), so the result does not depend on anything but the input.
fn sweep(rows: &mut Vec<Vec<Slot>>, links: &[(Slot, Slot)], band: &dyn Fn(&Slot) -> usize) {
    let mut best = rows.clone();
    let mut best_n = crossings(rows, links);
    for pass in 0..8 {
        let down = pass % 2 == 0;
        let levels: Vec<usize> = match down {
            true => (1..rows.len()).collect(),
            false => (0..rows.len().saturating_sub(1)).rev().collect(),
        };
        for l in levels {
            let fixed = if down { l - 1 } else { l + 1 };
            let keys: Vec<f64> = rows[l]
                .iter()
                .enumerate()
                .map(|(i, s)| barycenter(&rows[fixed], links, *s, down).unwrap_or(i as f64))
                .collect();
            let mut idx: Vec<usize> = (0..rows[l].len()).collect();
            idx.sort_by(|a, b| {
                (band(&rows[l][*a]).cmp(&band(&rows[l][*b])))
                    .then(keys[*a].total_cmp(&keys[*b]))
                    .then(a.cmp(b))
            });
            rows[l] = idx.iter().map(|i| rows[l][*i]).collect();
        }
        let n = crossings(rows, links);
        if n < best_n {
            best_n = n;
            best = rows.clone();
        }
    }
    *rows = best;
}

/// The mean position of `s`'s neighbours in the `fixed` layer (above when `down`).
fn barycenter(fixed: &[Slot], links: &[(Slot, Slot)], s: Slot, down: bool) -> Option<f64> {
    let ps: Vec<usize> = links
        .iter()
        .filter_map(|(a, b)| match down {
            true if *b == s => fixed.iter().position(|x| x == a),
            false if *a == s => fixed.iter().position(|x| x == b),
            _ => None,
        })
        .collect();
    (!ps.is_empty()).then(|| ps.iter().sum::<usize>() as f64 / ps.len() as f64)
}
