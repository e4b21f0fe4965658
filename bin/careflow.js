#!/usr/bin/env node
// Entry point of the `careflow` command. Runs the TypeScript sources directly (Node 24 type stripping).
await import('../src/cli/main.ts');
