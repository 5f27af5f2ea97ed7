// esbuild bundles imported CSS into ui.html (scripts/build.mjs).
declare module '*.css';
