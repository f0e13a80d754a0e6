//! Every integration test in one binary (one link step, one place to list them); each module is
//! one area a user meets, and each test starts its own local stack (`integration::TestStack`).

mod api_contract;
mod browser;
mod connect;
mod drills;
mod isolation;
mod reconcile;
mod resume;
mod scale;
mod secrets;
mod stripe_versions;
mod sync;
mod webhooks;
