//! SPDX licence expressions, just enough to decide "is this expression satisfiable by an
//! allow-list": `OR`, `AND`, `WITH`, parentheses and the legacy `/` (= `OR`) of old manifests.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// One licence, possibly with an exception (`Apache-2.0 WITH LLVM-exception`).
    License {
        /// The licence identifier.
        id: String,
        /// The `WITH` exception, if any.
        exception: Option<String>,
    },
    /// Both sides apply.
    And(Box<Expr>, Box<Expr>),
    /// The user may choose either side.
    Or(Box<Expr>, Box<Expr>),
}

/// Why an expression could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("licence expression {expr:?}: {problem}")]
pub struct ParseError {
    /// The expression as written.
    pub expr: String,
    /// What was wrong.
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Id(String),
    And,
    Or,
    With,
    Open,
    Close,
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>| {
        if word.is_empty() {
            return;
        }
        out.push(match word.as_str() {
            "AND" | "and" => Token::And,
            "OR" | "or" => Token::Or,
            "WITH" | "with" => Token::With,
            _ => Token::Id(word.clone()),
        });
        word.clear();
    };
    for c in text.chars() {
        match c {
            '(' | ')' | '/' => {
                flush(&mut word, &mut out);
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Or,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, problem: &str) -> ParseError {
        ParseError {
            expr: self.text.to_string(),
            problem: problem.to_string(),
        }
    }
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.atom()?;
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }
    fn atom(&mut self) -> Result<Expr, ParseError> {
        match self.toks.get(self.pos).cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.error("missing ')'"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Id(id)) => {
                self.pos += 1;
                let exception = if self.peek() == Some(&Token::With) {
                    self.pos += 1;
                    match self.toks.get(self.pos).cloned() {
                        Some(Token::Id(e)) => {
                            self.pos += 1;
                            Some(e)
                        }
                        _ => return Err(self.error("WITH needs an exception name")),
                    }
                } else {
                    None
                };
                Ok(Expr::License { id, exception })
            }
            Some(t) => Err(self.error(&format!("unexpected {t:?}"))),
            None => Err(self.error("ends too early")),
        }
    }
}

/// Parses an SPDX expression as cargo manifests write them.
///
/// # Errors
/// An empty or malformed expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        toks: tokens(text),
        pos: 0,
        text,
    };
    let expr = p.or()?;
    if p.pos != p.toks.len() {
        return Err(p.error("trailing tokens"));
    }
    Ok(expr)
}

impl Expr {
    /// True when some choice of the `OR` branches uses only allowed licences. A licence with an
    /// exception is allowed only when the allow-list names that exact pair
    /// (`Apache-2.0 WITH LLVM-exception`), as cargo-deny does.
    pub fn satisfied_by(&self, allowed: &[String]) -> bool {
        match self {
            Expr::License { id, exception } => {
                let name = match exception {
                    Some(e) => format!("{id} WITH {e}"),
                    None => id.clone(),
                };
                allowed.iter().any(|a| a == &name)
            }
            Expr::And(a, b) => a.satisfied_by(allowed) && b.satisfied_by(allowed),
            Expr::Or(a, b) => a.satisfied_by(allowed) || b.satisfied_by(allowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn choices_exceptions_and_precedence() {
        let a = allow(&["MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception"]);
        assert!(parse("MIT OR Apache-2.0").unwrap().satisfied_by(&a));
        assert!(parse("GPL-3.0 OR MIT").unwrap().satisfied_by(&a));
        assert!(!parse("GPL-3.0 AND MIT").unwrap().satisfied_by(&a));
        assert!(parse("MIT/Apache-2.0").unwrap().satisfied_by(&a));
        assert!(parse("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT")
            .unwrap()
            .satisfied_by(&a));
        assert!(!parse("GPL-2.0 WITH Classpath-exception-2.0")
            .unwrap()
            .satisfied_by(&a));
        // AND binds tighter than OR: (MIT AND GPL) OR Apache
        assert!(parse("MIT AND GPL-3.0 OR Apache-2.0")
            .unwrap()
            .satisfied_by(&a));
        assert!(!parse("MIT AND (GPL-3.0 OR LGPL-2.1)")
            .unwrap()
            .satisfied_by(&a));
        assert!(
            parse("(MIT OR Apache-2.0) AND Apache-2.0 WITH LLVM-exception")
                .unwrap()
                .satisfied_by(&a)
        );
        // an exception is its own licence: allowing Apache-2.0 does not allow the pair
        assert!(!parse("Apache-2.0 WITH LLVM-exception")
            .unwrap()
            .satisfied_by(&allow(&["Apache-2.0"])));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for bad in ["", "MIT OR", "(MIT", "MIT)", "MIT WITH", "AND MIT"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
