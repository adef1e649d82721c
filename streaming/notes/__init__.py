"""The component-notes flow: notes -> compliance classifier -> Delta alerts."""
