//! A tenant: everything else belongs to exactly one project.

use serde::{Deserialize, Serialize};

use super::aggregate::{Aggregate, DomainEvent};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Project {
    pub exists: bool,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create { name: String },
    Rename { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "project.created")]
    Created { name: String },
    #[serde(rename = "project.renamed")]
    Renamed { name: String },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Created { .. } => "project.created",
            Event::Renamed { .. } => "project.renamed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the project already exists")]
    AlreadyExists,
    #[error("the project does not exist")]
    NotFound,
    #[error("a project name is 1 to 200 characters, not blank")]
    InvalidName,
    #[error("the project already has that name")]
    Unchanged,
}

fn check_name(name: &str) -> Result<(), Rejection> {
    if name.trim().is_empty() || name.chars().count() > 200 { Err(Rejection::InvalidName) } else { Ok(()) }
}

impl Aggregate for Project {
    const KIND: &'static str = "project";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        match command {
            Command::Create { name } => {
                if self.exists {
                    return Err(Rejection::AlreadyExists);
                }
                check_name(&name)?;
                Ok(vec![Event::Created { name }])
            }
            Command::Rename { name } => {
                if !self.exists {
                    return Err(Rejection::NotFound);
                }
                check_name(&name)?;
                if name == self.name {
                    return Err(Rejection::Unchanged);
                }
                Ok(vec![Event::Renamed { name }])
            }
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Created { name } => {
                self.exists = true;
                self.name = name.clone();
            }
            Event::Renamed { name } => self.name = name.clone(),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Event {
        Event::Created { name: "Acme".into() }
    }

    #[test]
    fn a_project_is_created_once_and_renamed() {
        assert_eq!(Project::default().decide(Command::Create { name: "Acme".into() }), Ok(vec![created()]));
        let project = Project::replay(&[created()]);
        assert_eq!(project.decide(Command::Create { name: "Again".into() }), Err(Rejection::AlreadyExists));
        assert_eq!(
            project.decide(Command::Rename { name: "Acme 2".into() }),
            Ok(vec![Event::Renamed { name: "Acme 2".into() }])
        );
        assert_eq!(project.decide(Command::Rename { name: "Acme".into() }), Err(Rejection::Unchanged));
    }

    #[test]
    fn names_must_be_present_and_short_and_the_project_must_exist() {
        assert_eq!(Project::default().decide(Command::Create { name: "  ".into() }), Err(Rejection::InvalidName));
        assert_eq!(Project::default().decide(Command::Create { name: "x".repeat(201) }), Err(Rejection::InvalidName));
        assert_eq!(Project::default().decide(Command::Rename { name: "x".into() }), Err(Rejection::NotFound));
    }
}
