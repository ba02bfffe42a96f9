//! Depth-first task ordering, and cycle detection for submitted graphs.
//!
//! Priorities decide which ready task runs first. A post-order walk from each
//! requested output numbers a task right after its inputs, so a reduction tree
//! is computed branch by branch and partial results are freed early instead
//! of computing every leaf first (which is what breadth-first would do and
//! what floods memory).

/// Orders nodes `0..n`: `deps(i)` lists the in-graph inputs of `i` (each
/// below `n`). Returns each node's position, or the nodes of a cycle.
pub(crate) fn depth_first_order<'a>(
    n: usize,
    deps: impl Fn(usize) -> &'a [u32],
    outputs: &[usize],
) -> Result<Vec<u64>, Vec<usize>> {
    const UNSEEN: u64 = u64::MAX;
    const OPEN: u64 = u64::MAX - 1;
    let mut pos = vec![UNSEEN; n];
    let mut next = 0u64;
    // Walk from the outputs first, then anything not reachable from them.
    let starts = outputs.iter().copied().chain(0..n);
    for start in starts {
        if pos[start] != UNSEEN {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        pos[start] = OPEN;
        while let Some(top) = stack.last_mut() {
            let (node, child) = *top;
            if let Some(&dep) = deps(node).get(child) {
                let dep = dep as usize;
                top.1 += 1;
                if pos[dep] == UNSEEN {
                    pos[dep] = OPEN;
                    stack.push((dep, 0));
                } else if pos[dep] == OPEN {
                    let from = stack.iter().position(|&(s, _)| s == dep).unwrap_or(0);
                    let mut cycle: Vec<usize> = stack[from..].iter().map(|&(s, _)| s).collect();
                    cycle.push(dep);
                    return Err(cycle);
                }
            } else {
                pos[node] = next;
                next += 1;
                stack.pop();
            }
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_reduction_is_depth_first() {
        // 0,1 -> 4 ; 2,3 -> 5 ; 4,5 -> 6
        let deps: Vec<Vec<u32>> = vec![vec![], vec![], vec![], vec![], vec![0, 1], vec![2, 3], vec![4, 5]];
        let pos = depth_first_order(deps.len(), |i| &deps[i], &[6]).unwrap();
        // The first pair's sum comes before the second pair's leaves.
        assert!(pos[4] < pos[2] && pos[4] < pos[3]);
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                assert!(pos[d as usize] < pos[i]);
            }
        }
    }

    #[test]
    fn cycle_is_reported() {
        let deps: Vec<Vec<u32>> = vec![vec![2], vec![0], vec![1]];
        let cycle = depth_first_order(deps.len(), |i| &deps[i], &[0]).unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }
}
