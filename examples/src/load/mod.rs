//! Load generator (placeholder, being written).
