/** mammo-node's mammography reading view for stock OHIF 3.13 (an extension and a mode).
 *
 * Loaded at runtime by app-config.js (`extensions: ['/mammo-reading.js']`), served beside
 * OHIF's prebuilt dist by node/runtime/viewer.py: OHIF itself is not rebuilt nor forked.
 * It uses OHIF's own mechanisms only: a hanging protocol, a mode built from OHIF's basic
 * mode, commands bound to hotkeys, viewport overlay customisations, and the segmentation
 * service that shows DICOM SEG objects.
 *
 * What a reader gets at /mammo?StudyInstanceUIDs=...:
 * - 2x2 hanging: R CC, L CC over R MLO, L MLO; right breast in the left column, left in the
 *   right, each image aligned to the centre line so the chest walls face each other ("back
 *   to back"). Views are read from Image Laterality / Laterality and View Position / View
 *   Code Sequence, so studies that hold SR and SEG beside the images hang too (OHIF's own
 *   @ohif/hpMammo crashes on those: it reads images[0] of display sets that have none).
 * - AI marks on by default: over each image, where the model looked (the heatmap in
 *   probability bands, a BINARY SEG; its colour scale bottom left) and the lesion masks (a
 *   BINARY SEG, drawn as red outlines). Each SEG is put over the image whose SOP Instance
 *   UID it references (OHIF binds a SEG to the first image of the referenced series, and an
 *   MG series has one display set per image). Hotkey A hides and shows them.
 * - The finding marks of the node's TID 1500 report, on by default with the other AI marks:
 *   each measurement group's Image Region (a CIRCLE SCOORD) on the image it was selected
 *   from, labelled with its Tracking Identifier and "Probability of cancer". Drawn by a
 *   cornerstone display tool of ours (MammoSRMarks) in the viewports' tool group: OHIF's own
 *   DICOMSRDisplay tool draws only in its SR viewport.
 * - The exam score and the recall suggestion (top right of the first view) and each breast's
 *   score (top right of its views), read from the same report as any SR reader would: its
 *   Qualitative Evaluations (TID 1500 row 12): "Probability of cancer" (the exam's; a breast's
 *   with a Laterality modifier) and "Recommended Follow-up".
 * - Hotkeys: A AI marks on/off, N / P next / previous study of the study list, plus OHIF's
 *   own: I invert, Z zoom tool, + / - / = zoom in / out / fit, Space reset, arrows move
 *   between views.
 *
 * Not for clinical use: the node's outputs are research AI output.
 */

export const EXTENSION_ID = '@mammo-node/extension-reading';
export const MODE_ID = '@mammo-node/mode-reading';
export const PROTOCOL_ID = '@mammo-node/hp-mammo-2x2';
const NODE_MANUFACTURER = 'mammo-node';
const MEASUREMENT_REPORT = '126000'; // DCM "Imaging Measurement Report" (TID 1500)
const NORMAL_INTERVAL = '111140'; // DCM "Normal interval follow-up" (CID 6028): no recall
const IMAGING_MEASUREMENTS = '126010'; // DCM, TID 1500 row 6
const QUALITATIVE_EVALUATIONS = 'C0034375'; // UMLS, TID 1500 row 12
const PROBABILITY_OF_CANCER = '111047'; // DCM
const RECOMMENDED_FOLLOW_UP = '111053'; // DCM
const LATERALITY = '272741003'; // SCT, values CID 244
const SIDES = { 24028007: 'R', 7771000: 'L' };
const TRACKING_IDENTIFIER = '112039'; // DCM
const MARKS_TOOL = 'MammoSRMarks';
const MARK_COLOUR = 'rgb(255, 200, 0)'; // amber, as on the node's summary image and GSPS
// CID 4014 View for Mammography: SNOMED CT codes and their legacy SNOMED-RT values.
const VIEW_CODES = { 399162004: 'CC', 'R-10242': 'CC', 399368009: 'MLO', 'R-10226': 'MLO' };
// The series description of the heatmap-bands SEG (node/writers/heatmap_bands.py).
const BANDS_DESCRIPTION = 'AI where the model looked';

/** The state of the reading view: AI marks on or off, and what the node's report says. */
const state = {
  aiVisible: true,
  arranging: false,
  again: false,
  hung: new Set(),
  outlined: new Set(),
  // Which view carries the exam line (top left of the screen) and the legend (bottom left).
  cornerViewports: { exam: undefined, legend: undefined },
  summary: null,
  marks: [],
  legend: [],
  unsubscribe: [],
};

const first = value => (Array.isArray(value) ? value[0] : value);
const text = value => (value === undefined || value === null ? '' : String(value).trim());

/** "R CC", "L MLO", ... for an image display set; undefined for anything else.
 *
 * The order of node/dicom/views.py, which the node itself reads views by (first match
 * wins): laterality from Image Laterality, Laterality (CBIS-DDSM and many Secondary
 * Captures), Patient Orientation's column direction in the standard layout, words in Series
 * Description; the view from View Position, View Code Sequence (CID 4014), Patient
 * Orientation (a view name, as CBIS-DDSM writes, or the standard layout), words again.
 */
export function mammoView(displaySet) {
  const instance = displaySet?.instances?.[0] ?? displaySet?.instance;
  if (!instance || text(instance.Modality) !== 'MG') return undefined;
  if (text(instance.Manufacturer) === NODE_MANUFACTURER) return undefined; // the node's own
  const orientation = [].concat(instance.PatientOrientation ?? []).map(v => text(v).toUpperCase());
  const words = text(instance.SeriesDescription).toUpperCase();
  const code = first(instance.ViewCodeSequence);
  const laterality =
    [instance.ImageLaterality, instance.Laterality].map(v => text(v).toUpperCase()).find(v => v === 'R' || v === 'L') ??
    { L: 'R', R: 'L' }[orientation[1]?.replace('F', '')] ??
    (/(^|[^A-Z])(RIGHT|R[ _-]?(CC|MLO))([^A-Z]|$)/.test(words) ? 'R' : undefined) ??
    (/(^|[^A-Z])(LEFT|L[ _-]?(CC|MLO))([^A-Z]|$)/.test(words) ? 'L' : undefined);
  const view =
    [text(instance.ViewPosition).toUpperCase(), VIEW_CODES[text(code?.CodeValue)], orientation[0]].find(
      v => v === 'CC' || v === 'MLO'
    ) ??
    (orientation.length === 2 && ['A', 'P'].includes(orientation[0])
      ? orientation[1].startsWith('F')
        ? 'MLO'
        : 'CC'
      : undefined) ??
    (/MLO/.test(words) ? 'MLO' : /CC/.test(words) ? 'CC' : undefined);
  return laterality && view ? `${laterality} ${view}` : undefined;
}

// Image point at canvas point: the right breast's chest wall (its image's right edge) on
// the centre line, and the left breast's (its left edge) too (hpMammo's display areas).
const towardsCentre = side => ({
  storeAsInitialCamera: true,
  imageCanvasPoint:
    side === 'R'
      ? { imagePoint: [1, 0.5], canvasPoint: [1, 0.5] }
      : { imagePoint: [0, 0.5], canvasPoint: [0, 0.5] },
});

const selector = view => ({
  seriesMatchingRules: [{ attribute: 'MammoView', constraint: { equals: { value: view } }, required: true }],
});

const viewport = (id, side) => ({
  viewportOptions: { toolGroupId: 'default', allowUnmatchedView: true, displayArea: towardsCentre(side) },
  displaySets: [{ id }],
});

export const protocol = {
  id: PROTOCOL_ID,
  name: 'Mammography 2x2 (mammo-node)',
  protocolMatchingRules: [
    { attribute: 'ModalitiesInStudy', constraint: { contains: 'MG' }, required: true, weight: 1 },
  ],
  toolGroupIds: ['default'],
  displaySetSelectors: {
    RCC: selector('R CC'),
    LCC: selector('L CC'),
    RMLO: selector('R MLO'),
    LMLO: selector('L MLO'),
  },
  stages: [
    {
      name: 'R/L CC over R/L MLO',
      viewportStructure: { layoutType: 'grid', properties: { rows: 2, columns: 2 } },
      viewports: [viewport('RCC', 'R'), viewport('LCC', 'L'), viewport('RMLO', 'R'), viewport('LMLO', 'L')],
    },
  ],
  numberOfPriorsReferenced: -1,
};

// ---- The node's report: exam score, recall, breast scores (TID 1500) ----

function concept(item) {
  return text(first(item?.ConceptNameCodeSequence)?.CodeMeaning);
}

function conceptCode(item) {
  return text(first(item?.ConceptNameCodeSequence)?.CodeValue);
}

function valueCode(item) {
  return text(first(item?.ConceptCodeSequence)?.CodeValue);
}

function numeric(item) {
  const value = first(item?.MeasuredValueSequence)?.NumericValue;
  const number = Number(first(value));
  return Number.isFinite(number) ? number : undefined;
}

function unit(item) {
  return text(first(first(item?.MeasuredValueSequence)?.MeasurementUnitsCodeSequence)?.CodeValue);
}

function children(item) {
  const content = item?.ContentSequence;
  return Array.isArray(content) ? content : content ? [content] : [];
}

/** Scores and recall of the node's TID 1500 report: its Qualitative Evaluations. */
export function reportSummary(instance) {
  const evaluations = children(instance).find(k => conceptCode(k) === QUALITATIVE_EVALUATIONS);
  const scores = {};
  for (const item of children(evaluations)) {
    if (item.ValueType !== 'NUM' || conceptCode(item) !== PROBABILITY_OF_CANCER) continue;
    const side = children(item).find(k => conceptCode(k) === LATERALITY);
    scores[side ? SIDES[valueCode(side)] ?? valueCode(side) : 'exam'] = { score: numeric(item), unit: unit(item) };
  }
  const exam = scores.exam;
  if (!exam) return null;
  const followUp = children(evaluations).find(
    k => k.ValueType === 'CODE' && conceptCode(k) === RECOMMENDED_FOLLOW_UP
  );
  if (followUp) {
    exam.recommendation = text(first(followUp.ConceptCodeSequence)?.CodeMeaning);
    exam.recall = valueCode(followUp) !== NORMAL_INTERVAL;
  }
  return { exam, R: scores.R, L: scores.L };
}

/** The report's finding regions: each measurement group's SCOORD on its source image. */
export function reportMarks(instance) {
  const measurements = children(instance).find(k => conceptCode(k) === IMAGING_MEASUREMENTS);
  const marks = [];
  for (const group of children(measurements)) {
    const kids = children(group);
    const region = kids.find(k => k.ValueType === 'SCOORD');
    const source = first(children(region).find(k => k.ValueType === 'IMAGE')?.ReferencedSOPSequence);
    const points = [].concat(region?.GraphicData ?? []).map(Number);
    if (!source || points.length < 2 || points.some(v => !Number.isFinite(v))) continue;
    const score = kids.find(k => k.ValueType === 'NUM' && conceptCode(k) === PROBABILITY_OF_CANCER);
    const site = kids.find(k => text(first(k.ConceptNameCodeSequence)?.CodeValue) === '363698007');
    const side = children(site).find(k => conceptCode(k) === LATERALITY);
    marks.push({
      sopInstanceUID: text(source.ReferencedSOPInstanceUID),
      side: SIDES[valueCode(side)],
      graphicType: text(region.GraphicType),
      points,
      label: text(kids.find(k => conceptCode(k) === TRACKING_IDENTIFIER)?.TextValue),
      score: score ? { score: numeric(score), unit: unit(score) } : undefined,
    });
  }
  return marks;
}

function percent(group) {
  if (!group || group.score === undefined) return '';
  const value = group.unit === '%' ? group.score : group.score * 100;
  if (value > 99) return '> 99%';
  if (value < 1) return '< 1%';
  return `${Math.round(value)}%`;
}

// ---- Overlays: scores top right, the heatmap's colour legend bottom left ----

const overlayItem = (id, contentF, extra = {}) => ({
  id,
  inheritsFrom: 'ohif.overlayItem',
  title: 'mammo-node AI (not for clinical use)',
  contentF,
  ...extra,
});

const scoreItems = [
  overlayItem('mammoExamScore', ({ viewportId }) => {
    const exam = state.summary?.exam;
    if (viewportId !== state.cornerViewports.exam) return '';
    if (!exam) return '';
    const recall = exam.recall === undefined ? '' : exam.recall ? ' · RECALL' : ' · no recall';
    return `AI exam ${percent(exam)}${recall}`;
  }),
  overlayItem('mammoRecommendation', ({ viewportId }) =>
    viewportId === state.cornerViewports.exam && state.summary?.exam?.recall ? state.summary.exam.recommendation : ''
  ),
  overlayItem('mammoBreastScore', ({ instance }) => {
    const side = text(instance?.ImageLaterality || instance?.Laterality).toUpperCase();
    const score = percent(state.summary?.[side]);
    return score ? `AI ${side === 'R' ? 'right' : 'left'} breast ${score}` : '';
  }),
  overlayItem('mammoMarksOff', () => (state.aiVisible ? '' : 'AI marks hidden (A)')),
];

// The colours of node/writers/heatmap_bands.py BAND_COLOURS (viridis), each with a text
// colour that reads on it; the labels come from the SEG itself.
const BAND_COLOURS = [
  { background: '#3b528b', color: '#ffffff' },
  { background: '#21918c', color: '#ffffff' },
  { background: '#5ec962', color: '#000000' },
  { background: '#fde725', color: '#000000' },
];
const legendTitle = overlayItem('mammoLegendTitle', ({ viewportId }) =>
  state.aiVisible && viewportId === state.cornerViewports.legend && state.legend.length
    ? 'AI: where the model looked'
    : ''
);
const legendItems = BAND_COLOURS.map((colours, index) =>
  overlayItem(
    `mammoLegend${index}`,
    ({ viewportId }) => (state.aiVisible && viewportId === state.cornerViewports.legend ? state.legend[index] : '') ?? '',
    colours
  )
);

// ---- AI overlays: SEG objects over the image they reference ----

function referencedSOPInstanceUID(segDisplaySet) {
  const series = first(segDisplaySet.instance?.ReferencedSeriesSequence);
  return text(first(series?.ReferencedInstanceSequence)?.ReferencedSOPInstanceUID);
}

function isShownSeg(displaySet) {
  // FRACTIONAL SEGs are refused by OHIF 3.13; the band SEG shows the same heatmap.
  return displaySet.Modality === 'SEG' && text(displaySet.instance?.SegmentationType) !== 'FRACTIONAL';
}

/** The SEGs to lay over an image display set: bands first, lesion masks on top. */
function segsFor(displaySetService, imageDisplaySet) {
  const sopInstanceUIDs = new Set((imageDisplaySet.instances ?? []).map(i => i.SOPInstanceUID));
  return displaySetService
    .getActiveDisplaySets()
    .filter(d => isShownSeg(d) && sopInstanceUIDs.has(referencedSOPInstanceUID(d)))
    .sort((a, b) => isBands(b) - isBands(a));
}

/** Put the image's SEGs into its viewport as overlay display sets (OHIF loads and draws them). */
function showAIMarks(servicesManager, viewportId, viewport, imageDisplaySet) {
  const { displaySetService, viewportGridService } = servicesManager.services;
  const segs = segsFor(displaySetService, imageDisplaySet);
  const wanted = [imageDisplaySet.displaySetInstanceUID, ...segs.map(d => d.displaySetInstanceUID)];
  const current = viewport.displaySetInstanceUIDs ?? [];
  if (wanted.length === current.length && wanted.every(uid => current.includes(uid))) return false;
  for (const seg of segs) {
    // OHIF binds a SEG to the first image display set of the referenced series; an MG
    // series has one display set per image, so bind it to the image it references.
    seg.referencedDisplaySetInstanceUID = imageDisplaySet.displaySetInstanceUID;
  }
  viewportGridService.setDisplaySetsForViewport({ viewportId, displaySetInstanceUIDs: wanted });
  return true;
}

/** After OHIF drew the overlays: the legend, and the marks' visibility as the reader left it. */
function afterOverlaysAdded(servicesManager) {
  const { segmentationService, displaySetService, cornerstoneViewportService } = servicesManager.services;
  for (const { viewportId } of imageViewports(servicesManager)) {
    for (const representation of segmentationService.getSegmentationRepresentations(viewportId)) {
      const seg = displaySetService.getDisplaySetByUID(representation.segmentationId);
      if (seg && isBands(seg)) rememberLegend(segmentationService, representation.segmentationId);
      else if (seg) outlineOnly(segmentationService, viewportId, representation);
      if (!state.aiVisible) setVisibility(segmentationService, viewportId, representation.segmentationId, false);
    }
    cornerstoneViewportService.getCornerstoneViewport(viewportId)?.render(); // and its overlay text
  }
}

// Lesion masks as outlines, so the heatmap's colours show inside them.
const OUTLINE = { renderFill: false, renderFillInactive: false, outlineWidth: 3, outlineWidthInactive: 3 };

function outlineOnly(segmentationService, viewportId, representation) {
  const key = `${viewportId}:${representation.segmentationId}`;
  if (state.outlined.has(key)) return;
  state.outlined.add(key);
  segmentationService.setStyle(
    { viewportId, segmentationId: representation.segmentationId, type: representation.type },
    OUTLINE
  );
}

function isBands(displaySet) {
  return text(displaySet.SeriesDescription).startsWith(BANDS_DESCRIPTION);
}

function rememberLegend(segmentationService, segmentationId) {
  const segmentation = segmentationService.getSegmentation(segmentationId);
  state.legend = Object.values(segmentation?.segments ?? {})
    .filter(Boolean)
    .sort((a, b) => a.segmentIndex - b.segmentIndex)
    .map(segment => ` ${segment.label} `);
}

function setVisibility(segmentationService, viewportId, segmentationId, visible) {
  const segmentation = segmentationService.getSegmentation(segmentationId);
  for (const segment of Object.values(segmentation?.segments ?? {})) {
    if (segment) segmentationService.setSegmentVisibility(viewportId, segmentationId, segment.segmentIndex, visible);
  }
}

function imageViewports(servicesManager) {
  const { viewportGridService, displaySetService } = servicesManager.services;
  const found = [];
  for (const [viewportId, viewport] of viewportGridService.getState().viewports) {
    const uid = viewport.displaySetInstanceUIDs?.[0];
    const displaySet = uid ? displaySetService.getDisplaySetByUID(uid) : undefined;
    if (displaySet && mammoView(displaySet)) found.push({ viewportId, viewport, displaySet });
  }
  return found;
}

// ---- The report's finding marks, drawn by a cornerstone display tool ----

/** Centre and radius (image pixels) of a region: a CIRCLE as stored, else around its points. */
function circleOf(mark) {
  const xs = mark.points.filter((_, i) => i % 2 === 0);
  const ys = mark.points.filter((_, i) => i % 2 === 1);
  if (mark.graphicType === 'CIRCLE' && xs.length >= 2) {
    return { centre: [xs[0], ys[0]], radius: Math.hypot(xs[1] - xs[0], ys[1] - ys[0]) };
  }
  const centre = [xs.reduce((a, b) => a + b, 0) / xs.length, ys.reduce((a, b) => a + b, 0) / ys.length];
  const radius = Math.max(8, ...xs.map((x, i) => Math.hypot(x - centre[0], ys[i] - centre[1])));
  return { centre, radius };
}

function sopInstanceUIDOf(imageId) {
  const instance = window.cornerstone?.metaData?.get('instance', imageId);
  return text(instance?.SOPInstanceUID) || (/\/instances\/([0-9.]+)/.exec(imageId ?? '')?.[1] ?? '');
}

/** Draw the marks of the image a viewport shows; none while the AI marks are hidden. */
function renderMarks(enabledElement, svgDrawingHelper) {
  const { viewport } = enabledElement;
  const imageId = viewport.getCurrentImageId?.();
  if (!state.aiVisible || !imageId) return false;
  const cs = window.cornerstone;
  const { drawing } = window.cornerstoneTools;
  const uid = sopInstanceUIDOf(imageId);
  const toCanvas = ([x, y]) => viewport.worldToCanvas(cs.utilities.imageToWorldCoords(imageId, [x, y]));
  let drawn = false;
  state.marks
    .filter(mark => mark.sopInstanceUID === uid)
    .forEach((mark, index) => {
      const { centre, radius } = circleOf(mark);
      const centreOnCanvas = toCanvas(centre);
      const edge = toCanvas([centre[0] + radius, centre[1]]);
      const radiusOnCanvas = Math.hypot(edge[0] - centreOnCanvas[0], edge[1] - centreOnCanvas[1]);
      const annotationUID = `mammo-sr-${uid}-${index}`;
      drawing.drawCircle(svgDrawingHelper, annotationUID, 'region', centreOnCanvas, radiusOnCanvas,
        { color: MARK_COLOUR, lineWidth: 2, lineDash: '6,3' }, 'mammo-sr-mark');
      const score = percent(mark.score);
      const lines = [mark.label, score ? `AI ${score}` : ''].filter(Boolean);
      const options = { color: MARK_COLOUR, background: 'rgba(0, 0, 0, 0.6)', fontSize: '13px' };
      const top = centreOnCanvas[1] - radiusOnCanvas;
      const box = drawing.drawTextBox(svgDrawingHelper, annotationUID, 'label', lines,
        [centreOnCanvas[0] + radiusOnCanvas + 4, top], options);
      // A right breast hangs with its chest wall on the centre line, at its viewport's right
      // edge: its labels go to the left of the mark, away from that edge.
      if (mark.side === 'R' && box?.width) {
        const x = Math.max(0, centreOnCanvas[0] - radiusOnCanvas - 4 - box.width);
        drawing.drawTextBox(svgDrawingHelper, annotationUID, 'label', lines, [x, top], options);
      }
      drawn = true;
    });
  return drawn;
}

/** Register the display tool once, and enable it in the tool group of the hanging's viewports. */
function enableMarksTool(toolGroupService) {
  const tools = window.cornerstoneTools;
  if (!tools?.AnnotationDisplayTool || !window.cornerstone?.utilities?.imageToWorldCoords) {
    console.warn('mammo-reading: cornerstone tools not found; the report regions are not drawn');
    return;
  }
  if (!enableMarksTool.registered) {
    class MammoSRMarksTool extends tools.AnnotationDisplayTool {
      static toolName = MARKS_TOOL;
      constructor(props = {}, defaults = { configuration: {} }) {
        super(props, defaults);
        this.renderAnnotation = renderMarks;
      }
    }
    tools.addTool(MammoSRMarksTool);
    enableMarksTool.registered = true;
  }
  const toolGroup = toolGroupService.getToolGroup('default');
  if (!toolGroup) return;
  if (!toolGroup.hasTool?.(MARKS_TOOL)) toolGroup.addTool(MARKS_TOOL);
  toolGroup.setToolEnabled(MARKS_TOOL);
}

function readReport(displaySetService) {
  const report = displaySetService
    .getActiveDisplaySets()
    .find(
      d =>
        d.Modality === 'SR' &&
        text(first(d.instance?.ConceptNameCodeSequence)?.CodeValue) === MEASUREMENT_REPORT &&
        text(d.instance?.Manufacturer) === NODE_MANUFACTURER
    );
  if (report) {
    state.summary = reportSummary(report.instance);
    state.marks = reportMarks(report.instance);
  }
}

/** Chest wall towards the centre line: flip an image stored the other way round, align it.
 *
 * Patient Orientation's row direction (PS3.3 C.7.6.1.1.1) says where the chest wall is: a
 * right breast hangs with it on the image's right (rows run towards P), a left breast on
 * the left (rows run towards A). Done once per image, after the 2x2 grid has its size.
 */
function hangTowardsCentre(csViewport, displaySet) {
  const instance = displaySet.instances?.[0];
  const side = mammoView(displaySet)?.[0];
  const rows = text(first(instance?.PatientOrientation)).toUpperCase();
  const reversed = (side === 'R' && rows.startsWith('A')) || (side === 'L' && rows.startsWith('P'));
  if (reversed) csViewport.setCamera({ flipHorizontal: true });
  csViewport.setDisplayArea(towardsCentre(reversed ? (side === 'R' ? 'L' : 'R') : side));
  csViewport.render();
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** Until the viewport shows ``count`` segmentations (OHIF loads them), at most a while. */
async function overlaysShown(segmentationService, viewportId, count) {
  for (let waited = 0; waited < 20000; waited += 100) {
    if (segmentationService.getSegmentationRepresentations(viewportId).length >= count) break;
    await sleep(100);
  }
  await sleep(300);
}

/** Hang, align and lay the AI marks over each view, one view at a time.
 *
 * One at a time because OHIF 3.13 (cornerstone) drew overlays added to several viewports at
 * once in black (measured here in headless Chromium); one after the other they show in
 * their colours.
 */
async function arrange(servicesManager) {
  if (state.arranging) {
    state.again = true;
    return;
  }
  state.arranging = true;
  const { displaySetService, cornerstoneViewportService, segmentationService } = servicesManager.services;
  try {
    do {
      state.again = false;
      readReport(displaySetService);
      const views = imageViewports(servicesManager);
      const byView = view => views.find(v => mammoView(v.displaySet) === view)?.viewportId;
      state.cornerViewports = {
        exam: byView('R CC') ?? views[0]?.viewportId,
        legend: byView('R MLO') ?? views[views.length - 1]?.viewportId,
      };
      for (const { viewportId, viewport, displaySet } of imageViewports(servicesManager)) {
        const csViewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
        if (!csViewport?.getCurrentImageId?.()) continue;
        const key = `${viewportId}:${displaySet.displaySetInstanceUID}`;
        if (!state.hung.has(key)) {
          state.hung.add(key);
          hangTowardsCentre(csViewport, displaySet);
        }
        if (showAIMarks(servicesManager, viewportId, viewport, displaySet)) {
          await overlaysShown(segmentationService, viewportId, segsFor(displaySetService, displaySet).length);
          // Before the next view's overlay text is drawn (the legend is in a later view).
          afterOverlaysAdded(servicesManager);
        }
      }
    } while (state.again);
  } finally {
    state.arranging = false;
  }
  afterOverlaysAdded(servicesManager);
}

// ---- Commands (bound to hotkeys in the mode) ----

function toggleAIMarks(servicesManager) {
  const { segmentationService, cornerstoneViewportService } = servicesManager.services;
  state.aiVisible = !state.aiVisible;
  for (const { viewportId } of imageViewports(servicesManager)) {
    for (const representation of segmentationService.getSegmentationRepresentations(viewportId)) {
      setVisibility(segmentationService, viewportId, representation.segmentationId, state.aiVisible);
    }
    cornerstoneViewportService.getCornerstoneViewport(viewportId)?.render();
  }
  window.cornerstoneTools?.utilities?.triggerAnnotationRenderForViewportIds?.(
    imageViewports(servicesManager).map(v => v.viewportId)
  );
  return state.aiVisible;
}

/** The study list's next (+1) or previous (-1) study, newest first as OHIF's list shows them.
 *
 * A plain QIDO-RS query on the data source's root: OHIF's own client queues it behind the
 * image requests of the open study, seconds that a reader pressing N should not wait.
 */
async function goToStudy(extensionManager, step) {
  const [dataSource] = extensionManager.getActiveDataSource();
  const { qidoRoot } = dataSource.getConfig();
  const response = await fetch(`${qidoRoot}/studies?includefield=00080020`, {
    headers: { Accept: 'application/dicom+json' },
  });
  if (!response.ok) return false;
  const value = (study, tag) => text(first(study?.[tag]?.Value));
  const uids = (await response.json())
    .map(study => ({ uid: value(study, '0020000D'), date: value(study, '00080020') }))
    .sort((a, b) => b.date.localeCompare(a.date) || a.uid.localeCompare(b.uid))
    .map(study => study.uid);
  const query = new URLSearchParams(window.location.search);
  const index = uids.indexOf(query.get('StudyInstanceUIDs'));
  const next = uids[index + step];
  if (index < 0 || !next) return false;
  query.set('StudyInstanceUIDs', next);
  window.location.assign(`${window.location.pathname}?${query}`);
  return true;
}

// ---- The extension and the mode ----

const extension = {
  id: EXTENSION_ID,
  preRegistration({ servicesManager }) {
    servicesManager.services.hangingProtocolService.addCustomAttribute(
      'MammoView',
      'Laterality and view of a mammogram (R CC, L MLO, ...)',
      displaySet => mammoView(displaySet)
    );
  },
  getHangingProtocolModule() {
    return [{ name: PROTOCOL_ID, protocol }];
  },
  getCommandsModule({ servicesManager, extensionManager }) {
    return {
      definitions: {
        mammoToggleAIMarks: { commandFn: () => toggleAIMarks(servicesManager) },
        mammoNextStudy: { commandFn: () => goToStudy(extensionManager, +1) },
        mammoPreviousStudy: { commandFn: () => goToStudy(extensionManager, -1) },
      },
      defaultContext: 'DEFAULT',
    };
  },
};

export const hotkeys = [
  { commandName: 'mammoToggleAIMarks', label: 'AI marks on/off', keys: ['a'], isEditable: true },
  { commandName: 'mammoNextStudy', label: 'Next study', keys: ['n'], isEditable: true },
  { commandName: 'mammoPreviousStudy', label: 'Previous study', keys: ['p'], isEditable: true },
];

const readingCustomizations = {
  'panelSegmentation.disableEditing': { $set: true },
  // Ours replace what OHIF binds to the same keys (A, N: segmentation editing, off here).
  'ohif.hotkeyBindings': {
    $apply: bindings => [
      ...(bindings ?? []).filter(b => !b.keys?.some(key => hotkeys.some(h => h.keys.includes(key)))),
      ...hotkeys,
    ],
  },
  'viewportOverlay.topRight': { $push: scoreItems },
  'viewportOverlay.bottomLeft': { $push: [legendTitle, ...legendItems] },
};

export const mode = {
  id: MODE_ID,
  async modeFactory({ loadModules }) {
    const [basic] = await loadModules(['@ohif/mode-basic']);
    const base = await basic.modeFactory({ modeConfiguration: {} });
    return {
      ...base,
      id: MODE_ID,
      routeName: 'mammo',
      displayName: 'Mammography reading (mammo-node)',
      hide: false,
      hangingProtocol: [PROTOCOL_ID, 'default'],
      modeCustomizations: readingCustomizations,
      isValidMode: ({ modalities }) => ({
        valid: modalities.split('\\').includes('MG'),
        description: 'The mammography reading view needs MG images',
      }),
      onModeEnter(args) {
        base.onModeEnter.call(this, args);
        const { displaySetService, viewportGridService, cornerstoneViewportService } =
          args.servicesManager.services;
        state.aiVisible = true;
        state.summary = null;
        state.marks = [];
        state.legend = [];
        enableMarksTool(args.servicesManager.services.toolGroupService);
        state.hung = new Set();
        state.outlined = new Set();
        const update = () => arrange(args.servicesManager);
        state.unsubscribe = [
          displaySetService.subscribe(displaySetService.EVENTS.DISPLAY_SETS_ADDED, update),
          viewportGridService.subscribe(viewportGridService.EVENTS.GRID_STATE_CHANGED, update),
          cornerstoneViewportService.subscribe(cornerstoneViewportService.EVENTS.VIEWPORT_DATA_CHANGED, update),
        ].map(s => s.unsubscribe);
      },
      onModeExit(args) {
        state.unsubscribe.forEach(unsubscribe => unsubscribe());
        state.unsubscribe = [];
        base.onModeExit.call(this, args);
      },
    };
  },
};

export default extension;
