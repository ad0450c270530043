pub fn main_with_args(_a: Vec<String>) -> i32 { 0 }
