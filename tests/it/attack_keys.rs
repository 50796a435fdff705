//! Keys made from input never name a path outside the store: the segment rule
//! on every route that makes a key, and the store's own check at its door.
