//! Every default limit, named, with the reason for its value.
