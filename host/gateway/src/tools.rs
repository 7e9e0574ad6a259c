//! OWNED BY THE SERVER WORK (to be written).
