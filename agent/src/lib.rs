//! devinst's agent: the protocol it speaks (shared with devinst, the client)
//! and, in the binary, the agent itself.

pub mod proto;
