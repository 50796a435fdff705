//! A lost or damaged index never lets a command or GC empty the store, and a
//! second process on a data dir never disturbs the first.
