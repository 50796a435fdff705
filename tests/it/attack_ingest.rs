//! Upload resources (descriptors, temp space, memory), clients that vanish,
//! and damaged blobs.
