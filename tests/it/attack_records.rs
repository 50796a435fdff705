//! What anonymous and token-holding clients can make the server record, and
//! what records, tokens and pages give back.
