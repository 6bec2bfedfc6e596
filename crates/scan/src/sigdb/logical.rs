//! Logical signatures (`.ldb`): a boolean expression over counts of sub-signature matches.
//!
//! Supported expressions: sub-signature numbers, `&`, `|`, parentheses, and count conditions
//! `X=n`, `X>n`, `X<n` (also on parenthesised groups, counting matches of all members).

/// An expression node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Subsignature number N matched.
    Sub(usize),
    /// All of them.
    And(Vec<Expr>),
    /// Any of them.
    Or(Vec<Expr>),
    /// How many times an expression matched, compared with `n`.
    Count {
        /// What is counted.
        expr: Box<Expr>,
        /// The comparison.
        op: CountOp,
        /// The number.
        n: u32,
        /// `A>X,Y`: at least this many different sub-signatures of `expr` matched, too.
        distinct: Option<u32>,
    },
}

/// Comparison in a count condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOp {
    /// Exactly.
    Eq,
    /// More than.
    Gt,
    /// Fewer than.
    Lt,
}

impl Expr {
    /// Parses a ClamAV logical expression.
    pub fn parse(s: &str) -> Result<Expr, String> {
        let toks: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
        let mut p = 0;
        let e = parse_or(&toks, &mut p)?;
        if p != toks.len() {
            return Err(format!("unexpected {:?} in logical expression {s:?}", toks[p]));
        }
        Ok(e)
    }

    /// Highest sub-signature number used.
    pub fn max_sub(&self) -> usize {
        match self {
            Expr::Sub(n) => *n,
            Expr::And(v) | Expr::Or(v) => v.iter().map(Expr::max_sub).max().unwrap_or(0),
            Expr::Count { expr, .. } => expr.max_sub(),
        }
    }

    /// How many different sub-signatures of this expression matched at least once.
    fn distinct(&self, counts: &[u32]) -> u32 {
        let mut subs = Vec::new();
        self.subs(&mut subs);
        subs.sort_unstable();
        subs.dedup();
        subs.iter().filter(|&&s| counts.get(s).copied().unwrap_or(0) > 0).count() as u32
    }

    fn subs(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Sub(n) => out.push(*n),
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.subs(out)),
            Expr::Count { expr, .. } => expr.subs(out),
        }
    }

    fn total(&self, counts: &[u32]) -> u32 {
        match self {
            Expr::Sub(n) => counts.get(*n).copied().unwrap_or(0),
            Expr::And(v) | Expr::Or(v) => v.iter().map(|e| e.total(counts)).sum(),
            Expr::Count { expr, .. } => expr.total(counts),
        }
    }

    /// Evaluates with the number of matches of each sub-signature.
    pub fn eval(&self, counts: &[u32]) -> bool {
        match self {
            Expr::Sub(n) => counts.get(*n).copied().unwrap_or(0) > 0,
            Expr::And(v) => v.iter().all(|e| e.eval(counts)),
            Expr::Or(v) => v.iter().any(|e| e.eval(counts)),
            Expr::Count { expr, op, n, distinct } => {
                let t = expr.total(counts);
                let count_ok = match op {
                    CountOp::Eq => t == *n,
                    CountOp::Gt => t > *n,
                    CountOp::Lt => t < *n,
                };
                count_ok && distinct.is_none_or(|y| expr.distinct(counts) >= y)
            }
        }
    }
}

fn parse_or(t: &[char], p: &mut usize) -> Result<Expr, String> {
    let mut items = vec![parse_and(t, p)?];
    while t.get(*p) == Some(&'|') {
        *p += 1;
        items.push(parse_and(t, p)?);
    }
    Ok(if items.len() == 1 { items.pop().expect("one") } else { Expr::Or(items) })
}

fn parse_and(t: &[char], p: &mut usize) -> Result<Expr, String> {
    let mut items = vec![parse_count(t, p)?];
    while t.get(*p) == Some(&'&') {
        *p += 1;
        items.push(parse_count(t, p)?);
    }
    Ok(if items.len() == 1 { items.pop().expect("one") } else { Expr::And(items) })
}

fn parse_count(t: &[char], p: &mut usize) -> Result<Expr, String> {
    let atom = parse_atom(t, p)?;
    let op = match t.get(*p) {
        Some('=') => CountOp::Eq,
        Some('>') => CountOp::Gt,
        Some('<') => CountOp::Lt,
        _ => return Ok(atom),
    };
    *p += 1;
    let n = number(t, p).ok_or("count without a number")?;
    let distinct = if t.get(*p) == Some(&',') {
        *p += 1;
        Some(number(t, p).ok_or("',' without a number of distinct sub-signatures")? as u32)
    } else {
        None
    };
    Ok(Expr::Count { expr: Box::new(atom), op, n: n as u32, distinct })
}

fn parse_atom(t: &[char], p: &mut usize) -> Result<Expr, String> {
    if t.get(*p) == Some(&'(') {
        *p += 1;
        let e = parse_or(t, p)?;
        if t.get(*p) != Some(&')') {
            return Err("missing ')' in logical expression".into());
        }
        *p += 1;
        return Ok(e);
    }
    number(t, p).map(Expr::Sub).ok_or_else(|| format!("expected a sub-signature number at {:?}", t.get(*p)))
}

fn number(t: &[char], p: &mut usize) -> Option<usize> {
    let start = *p;
    while t.get(*p).is_some_and(|c| c.is_ascii_digit()) {
        *p += 1;
    }
    t[start..*p].iter().collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        let e = Expr::parse("(0|1)&2").unwrap();
        assert!(e.eval(&[1, 0, 1]));
        assert!(!e.eval(&[1, 0, 0]));
        assert_eq!(e.max_sub(), 2);
        let c = Expr::parse("0=2&1>1&2<1").unwrap();
        assert!(c.eval(&[2, 2, 0]));
        assert!(!c.eval(&[3, 2, 0]));
        assert!(Expr::parse("0&").is_err());
        assert!(Expr::parse("0,1").is_err());
    }
}
