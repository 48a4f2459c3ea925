//! Custom criteria logic such as `1 AND (2 OR NOT 3)`.
//!
//! Numbers name criteria by their 1-based position in the list. Precedence is
//! NOT over AND over OR; parentheses group; keywords are case-insensitive.
//! Errors carry the 1-based column where reading stopped, so the inspector
//! can point at it.

use std::fmt;

/// A parsed logic expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogicExpr {
    /// Criterion number N (1-based).
    Criterion(usize),
    Not(Box<LogicExpr>),
    And(Vec<LogicExpr>),
    Or(Vec<LogicExpr>),
}

/// Why a logic expression could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at column {column})")]
pub struct LogicError {
    /// 1-based column in the expression, counted in characters.
    pub column: usize,
    pub message: String,
}

impl LogicExpr {
    /// Parses `text` for a list of `criteria_count` criteria.
    pub fn parse(text: &str, criteria_count: usize) -> Result<LogicExpr, LogicError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0, criteria_count, end_column: text.chars().count() + 1 };
        if parser.tokens.is_empty() {
            return Err(LogicError { column: 1, message: "the logic is empty".into() });
        }
        let expr = parser.or()?;
        if let Some(token) = parser.tokens.get(parser.at) {
            return Err(LogicError {
                column: token.column,
                message: format!("expected AND, OR or the end, found {}", token.kind),
            });
        }
        Ok(expr)
    }

    /// Evaluates with `results[i]` the outcome of criterion `i + 1`. A number
    /// outside the list counts as unmet (parse refuses those anyway).
    pub fn eval(&self, results: &[bool]) -> bool {
        match self {
            LogicExpr::Criterion(n) => n.checked_sub(1).and_then(|i| results.get(i)).copied().unwrap_or(false),
            LogicExpr::Not(inner) => !inner.eval(results),
            LogicExpr::And(parts) => parts.iter().all(|part| part.eval(results)),
            LogicExpr::Or(parts) => parts.iter().any(|part| part.eval(results)),
        }
    }
}

impl fmt::Display for LogicExpr {
    /// Fully parenthesised, to show how an expression was read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[LogicExpr], op: &str| {
            f.write_str("(")?;
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{part}")?;
            }
            f.write_str(")")
        };
        match self {
            LogicExpr::Criterion(n) => write!(f, "{n}"),
            LogicExpr::Not(inner) => write!(f, "NOT {inner}"),
            LogicExpr::And(parts) => join(f, parts, "AND"),
            LogicExpr::Or(parts) => join(f, parts, "OR"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TokenKind {
    Number(usize),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Number(n) => write!(f, "{n}"),
            TokenKind::And => f.write_str("AND"),
            TokenKind::Or => f.write_str("OR"),
            TokenKind::Not => f.write_str("NOT"),
            TokenKind::Open => f.write_str("'('"),
            TokenKind::Close => f.write_str("')'"),
        }
    }
}

#[derive(Debug)]
struct Token {
    kind: TokenKind,
    column: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, LogicError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let column = i + 1;
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            tokens.push(Token { kind: if c == '(' { TokenKind::Open } else { TokenKind::Close }, column });
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            let n = digits.parse().map_err(|_| LogicError { column, message: format!("{digits} is too large") })?;
            tokens.push(Token { kind: TokenKind::Number(n), column });
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let kind = match word.to_ascii_uppercase().as_str() {
                "AND" => TokenKind::And,
                "OR" => TokenKind::Or,
                "NOT" => TokenKind::Not,
                _ => {
                    return Err(LogicError {
                        column,
                        message: format!("\"{word}\" is not AND, OR, NOT or a criterion number"),
                    })
                }
            };
            tokens.push(Token { kind, column });
        } else {
            return Err(LogicError { column, message: format!("unexpected character '{c}'") });
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    criteria_count: usize,
    end_column: usize,
}

impl Parser {
    fn peek(&self) -> Option<&TokenKind> {
        self.tokens.get(self.at).map(|token| &token.kind)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end_column, |token| token.column)
    }

    fn or(&mut self) -> Result<LogicExpr, LogicError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&TokenKind::Or) {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap() } else { LogicExpr::Or(parts) })
    }

    fn and(&mut self) -> Result<LogicExpr, LogicError> {
        let mut parts = vec![self.not()?];
        while self.peek() == Some(&TokenKind::And) {
            self.at += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap() } else { LogicExpr::And(parts) })
    }

    fn not(&mut self) -> Result<LogicExpr, LogicError> {
        if self.peek() == Some(&TokenKind::Not) {
            self.at += 1;
            return Ok(LogicExpr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<LogicExpr, LogicError> {
        let column = self.column();
        match self.peek().cloned() {
            Some(TokenKind::Number(n)) => {
                self.at += 1;
                if n == 0 || n > self.criteria_count {
                    let message = match self.criteria_count {
                        0 => format!("criterion {n} does not exist: there are no criteria"),
                        1 => format!("criterion {n} does not exist: there is only criterion 1"),
                        count => format!("criterion {n} does not exist: criteria are numbered 1 to {count}"),
                    };
                    return Err(LogicError { column, message });
                }
                Ok(LogicExpr::Criterion(n))
            }
            Some(TokenKind::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&TokenKind::Close) {
                    return Err(LogicError { column: self.column(), message: "missing ')'".into() });
                }
                self.at += 1;
                Ok(inner)
            }
            Some(other) => Err(LogicError { column, message: format!("expected a criterion number or '(', found {other}") }),
            None => Err(LogicError { column, message: "the logic ends too early".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> String {
        LogicExpr::parse(text, 5).unwrap().to_string()
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        assert_eq!(read("1 AND (2 OR NOT 3)"), "(1 AND (2 OR NOT 3))");
        assert_eq!(read("1 OR 2 AND 3"), "(1 OR (2 AND 3))");
        assert_eq!(read("NOT 1 AND 2"), "(NOT 1 AND 2)");
        assert_eq!(read("not not 4 or 5"), "(NOT NOT 4 OR 5)");
        assert_eq!(read("((1))"), "1");
    }

    #[test]
    fn evaluates_against_criterion_results() {
        let expr = LogicExpr::parse("1 AND (2 OR NOT 3)", 3).unwrap();
        assert!(expr.eval(&[true, false, false]));
        assert!(!expr.eval(&[true, false, true]));
        assert!(!expr.eval(&[false, true, true]));
        assert!(expr.eval(&[true, true, true]));
    }

    #[test]
    fn errors_say_where_and_what() {
        let err = LogicExpr::parse("1 AND (2 OR 3", 3).unwrap_err();
        assert_eq!(err.column, 14);
        assert!(err.message.contains("missing ')'"));

        let err = LogicExpr::parse("1 AND 4", 3).unwrap_err();
        assert_eq!(err.column, 7);
        assert!(err.message.contains("numbered 1 to 3"));

        let err = LogicExpr::parse("1 XOR 2", 3).unwrap_err();
        assert_eq!(err.column, 3);

        let err = LogicExpr::parse("1 2", 3).unwrap_err();
        assert_eq!(err.column, 3);

        assert_eq!(LogicExpr::parse("   ", 3).unwrap_err().message, "the logic is empty");
        assert!(LogicExpr::parse("1 AND", 3).unwrap_err().message.contains("ends too early"));
        assert!(LogicExpr::parse("0", 3).is_err());
        assert!(LogicExpr::parse("1 & 2", 3).unwrap_err().message.contains("unexpected character"));
        assert!(LogicExpr::parse("99999999999999999999999", 3).is_err());
    }
}
