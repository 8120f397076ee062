use secure_tools::secure_tool;

#[derive(Debug)]
struct LookupError;

/// Looks a word up.
#[secure_tool(scope = "dictionary.read")]
async fn lookup(word: String) -> Result<String, LookupError> {
    Ok(word)
}

fn main() {}
