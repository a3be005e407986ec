//! The batch job runner shared by 'engine run' and the engine service.
