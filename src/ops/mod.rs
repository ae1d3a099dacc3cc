//! What operators see of the agent: [`metrics`] (the figures every part updates), the HTTP
//! [`endpoint`], the [`cloudwatch`] publisher and [`top`].

pub mod cloudwatch;
pub mod endpoint;
pub mod metrics;
pub mod top;
