//! placeholder, replaced by the test-host issue
