"""The designer's review inbox: turns the bot did not understand, grouped, turned into
training examples, and a retrain that the running Rasa servers load in place."""
