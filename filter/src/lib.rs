//! placeholder, replaced by the filter implementation
