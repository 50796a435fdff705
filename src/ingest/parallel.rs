//! A bounded pool of scoped worker threads over a slice.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Applies `f` to every item on up to `workers` threads, each with its own
/// state from `init`. Results come back in item order. On the first error the
/// workers stop taking new items, and the error of the lowest-numbered failing
/// item is returned.
pub fn par_map<T: Sync, S, R: Send>(
    items: &[T],
    workers: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let workers = workers.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut state = init();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(&mut state, item);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(items.len());
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if out.len() != items.len() {
        return Err(Error::Io(std::io::Error::other(
            "a worker stopped without a result",
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_item_order() {
        let items: Vec<u32> = (0..100).collect();
        let out = par_map(&items, 4, || (), |_, x| Ok(x * 2)).unwrap();
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_failing_item_wins() {
        let items: Vec<u32> = (0..50).collect();
        let err = par_map(
            &items,
            1,
            || (),
            |_, &x| {
                if x >= 10 {
                    Err(Error::BadRequest(format!("item {x}")))
                } else {
                    Ok(x)
                }
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "item 10");
    }
}
